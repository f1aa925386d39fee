"""The text SeC's LVLM reads and writes: InternVL 2.5's special tokens, `[SEG]`, and SeC's
stage-2 questions and answers.

The lowest module of the package: the tokenizers (`sec_train.model.tokenizer`, whose toy one
trains on these texts) and the prompt builder (`sec_train.data.prompts`) both import it.
"""

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"
IMG_START = "<img>"
IMG_END = "</img>"
IMG_CONTEXT = "<IMG_CONTEXT>"
SEG_TOKEN = "[SEG]"
SPECIAL_TOKENS = [END_OF_TEXT, IM_START, IM_END, IMG_START, IMG_END, IMG_CONTEXT, SEG_TOKEN]

# The official lists (training/sec/dataloaders/sec_seg_dataset.py:24-39).
QUESTIONS = (
    "Please segment the object in the last frame based on the object labeled in the first several images.",
    "Using the object labeled in the first several images, please segment the object in the final frame.",
    "Segment the object in the last frame based on the annotations from the first several images.",
    "Please perform object segmentation on the last frame using the labeled object from the previous "
    "several frames.",
    "Based on the object marked in the first several images, segment the object in the last frame.",
    "Using the object annotations from the first several images, segment the object in the final frame.",
)
ANSWERS = (
    "It is [SEG].",
    "Sure, [SEG].",
    "Sure, it is [SEG].",
    "Sure, the segmentation result is [SEG].",
    "[SEG].",
)
# What inference asks (inference/modeling_sec.py:618 and :694).
INFERENCE_QUESTION, INFERENCE_ANSWER = QUESTIONS[0], ANSWERS[0]
