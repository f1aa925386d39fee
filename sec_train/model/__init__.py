"""SeC's model: the module (`sec`), its stage-1 and stage-2 forward parts, the trainable policy
(`trainable`), weight files (`weights`) and where weights come from (`build`)."""
