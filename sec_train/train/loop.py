"""The training loop: one `Trainer` per run, under accelerate (plain, DDP or DeepSpeed ZeRO-2/3)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from accelerate.utils import DistributedType, set_seed

from sec_train.checkpoint_layout import find_checkpoint
from sec_train.data.loader import Loader, build_loader
from sec_train.model.build import build_trainable_model
from sec_train.model.sec import SeCModel
from sec_train.train.accel import forward_autocast, init_process_group, make_accelerator
from sec_train.train.checkpoint import Stateful, load_checkpoint, save_checkpoint
from sec_train.train.config import TrainConfig, to_yaml
from sec_train.train.optim import build_optimizer, build_scheduler
from sec_train.train.rng import RNGState
from sec_train.train.run_log import RunLogger, Throughput, flops_per_token, peak_flops
from sec_train.types import Batch, Stage2Batch


class NonFiniteLossError(RuntimeError):
    """Too many non-finite losses in a row: the run stops instead of training on garbage."""


class Trainer:
    """Runs a `TrainConfig`: builds model, optimizer, schedule and training loader, prepares them
    with accelerate.

    The trainer is itself a checkpoint state (`state_dict()`: the step and the non-finite-loss
    counters), saved beside its loader's position and the RNG states.

    Args:
        cfg (`TrainConfig`): the run.
        model (`SeCModel`, *optional*): a prebuilt model (the step benchmark passes one); default
            `build_trainable_model(cfg.model)`.
    """

    def __init__(self, cfg: TrainConfig, model: SeCModel | None = None):
        self.cfg = cfg
        init_process_group()
        set_seed(cfg.seed)  # every process builds the same initial weights
        model = build_trainable_model(cfg.model) if model is None else model
        self.accelerator = make_accelerator(cfg, model)
        optimizer = build_optimizer(model, cfg.optim)
        scheduler = build_scheduler(optimizer, cfg.optim, cfg.max_steps)
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, optimizer, scheduler)
        # without data.train the trainer steps the batches it is given (tests, benchmarks) but cannot fit
        self.loader: Loader | None = None
        if cfg.data.train:
            acc = self.accelerator
            self.loader = build_train_loader(cfg, self.unwrapped, acc.process_index, acc.num_processes)
        self.step = 0
        self.nonfinite_total = 0
        self.nonfinite_in_row = 0
        self._window: list[torch.Tensor] = []
        self._loss_keys: list[str] | None = None

    @property
    def unwrapped(self) -> SeCModel:
        return self.accelerator.unwrap_model(self.model)

    def _reduced_losses(self, losses: dict[str, torch.Tensor]) -> tuple[torch.Tensor, bool]:
        """The loss parts averaged over processes, and whether every process's were finite
        (one collective, so all processes agree on skipping)."""
        if self._loss_keys is None:
            self._loss_keys = ["loss", *sorted(k for k in losses if k != "loss")]
        parts = torch.stack([losses[k].detach().float().reshape(()) for k in self._loss_keys])
        bad = (~torch.isfinite(parts).all()).float().reshape(1)
        total = self.accelerator.reduce(torch.cat([parts.nan_to_num(0.0, 0.0, 0.0), bad]), "sum")
        return total[:-1] / self.accelerator.num_processes, bool(total[-1] == 0)

    def train_step(self, batch: Batch) -> dict[str, float] | None:
        """Forward and backward of one micro-batch (moved to this process's device); steps the
        optimizer at the end of an accumulation window.

        Returns:
            At an optimizer step, its metrics (loss parts averaged over the window and the
            processes, lr, grad_norm); None otherwise, including for a skipped micro-batch.

        Raises:
            NonFiniteLossError: `cfg.max_nonfinite` non-finite losses in a row.
        """
        with forward_autocast(self.cfg, self.accelerator.device):
            losses = self.model(batch.to(self.accelerator.device, non_blocking=True))
        parts, finite = self._reduced_losses(losses)
        if not finite:
            self.nonfinite_total += 1
            self.nonfinite_in_row += 1
            if self.nonfinite_in_row >= self.cfg.max_nonfinite:
                raise NonFiniteLossError(
                    f"{self.nonfinite_in_row} non-finite losses in a row at step {self.step} "
                    f"(max_nonfinite={self.cfg.max_nonfinite}); lower optim.lr or check the data"
                )
            return None
        self.nonfinite_in_row = 0
        self._window.append(parts)
        with self.accelerator.accumulate(self.model):
            self.accelerator.backward(losses["loss"])
            if not self.accelerator.sync_gradients:
                return None
            lr = self.scheduler.get_last_lr()[0]
            grad_norm = self._clip_and_step()
        self.step += 1
        metrics = dict(zip(self._loss_keys, torch.stack(self._window).mean(0).tolist()))
        self._window = []
        metrics["lr"] = lr
        if grad_norm is not None:
            metrics["grad_norm"] = grad_norm
        return metrics

    def _clip_and_step(self) -> float | None:
        """Clips, steps optimizer and schedule; returns the pre-clip gradient norm."""
        if self.accelerator.distributed_type == DistributedType.DEEPSPEED:
            # DeepSpeed clipped and stepped inside `backward`
            norm = self.model.get_global_grad_norm()
        else:
            params = [p for p in self.model.parameters() if p.requires_grad]
            norm = self.accelerator.clip_grad_norm_(params, self.cfg.optim.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return None if norm is None else float(norm)

    def state_dict(self) -> dict[str, int]:
        return {
            "step": self.step,
            "nonfinite_total": self.nonfinite_total,
            "nonfinite_in_row": self.nonfinite_in_row,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])
        self.nonfinite_total = int(state["nonfinite_total"])
        self.nonfinite_in_row = int(state["nonfinite_in_row"])

    def checkpoint_states(self) -> dict[str, Stateful]:
        """What a checkpoint stores besides model, optimizer and schedule, by name."""
        states: dict[str, Stateful] = {"train_state": self, "rng": RNGState()}
        if self.loader is not None:
            states["loader"] = self.loader
        return states

    def save(self) -> Path:
        """Writes the checkpoint of the current step (every process calls this)."""
        return save_checkpoint(
            self.accelerator,
            self.unwrapped,
            self.cfg.out_dir,
            self.step,
            states=self.checkpoint_states(),
            config_yaml=to_yaml(self.cfg),
            keep_last=self.cfg.keep_last,
        )

    def restore(self, path: str | Path) -> None:
        """Restores the checkpoint at `path` (every process calls this)."""
        load_checkpoint(self.accelerator, path, self.checkpoint_states())

    def resume_path(self) -> Path | None:
        """The checkpoint `cfg.resume` names ("auto": the newest under `out_dir`, if any)."""
        if self.cfg.resume is None:
            return None
        if self.cfg.resume == "auto":
            return find_checkpoint(self.cfg.out_dir)
        return Path(self.cfg.resume)

    def validate(self) -> dict[str, float]:
        """J&F on `cfg.data.val` with the current weights, on every process (ZeRO-3 needs all of
        them for a forward); the keys gain a "val/" prefix."""
        from sec_train.eval.evaluate import evaluate_model

        use_concept = self.cfg.model.mode != "stage1"
        with (
            torch.no_grad(),
            self.accelerator.autocast(),
            forward_autocast(self.cfg, self.accelerator.device),
        ):
            scores = evaluate_model(
                self.unwrapped, self.cfg.data.val, use_concept=use_concept, max_videos=self.cfg.val_max_videos
            )
        return {f"val/{k}": float(v) for k, v in scores.items()}

    def fit(self) -> dict[str, float]:
        """Trains to `cfg.max_steps`, logging, validating and checkpointing on the way.

        Returns:
            The metrics of the last optimizer step.
        """
        cfg, acc, loader = self.cfg, self.accelerator, self.loader
        if loader is None:
            raise ValueError("data.train is empty: name the shard directories (data.train=[DIR,...])")
        path = self.resume_path()
        if path is not None:
            self.restore(path)
        logger = RunLogger(cfg, acc.is_main_process, self.step)
        logger.print(f"resolved config:\n{to_yaml(cfg)}")
        if path is not None:
            logger.print(f"resumed from {path} at step {self.step}")
        meter = Throughput(flops_per_token(self.unwrapped), _total_peak_flops(acc))
        batches = _batches(loader)
        metrics: dict[str, float] = {}
        try:
            while self.step < cfg.max_steps:
                batch = next(batches)
                meter.add(*_batch_size(batch, acc.num_processes))
                step_metrics = self.train_step(batch)
                if step_metrics is None:
                    continue
                metrics = step_metrics
                logger.step()
                self._after_step(metrics, meter, logger)
        finally:
            logger.close()
        return metrics

    def _after_step(self, metrics: dict[str, float], meter: Throughput, logger: RunLogger) -> None:
        cfg, step = self.cfg, self.step
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            logger.log(step, {**metrics, **meter.rates(), "nonfinite_skipped": self.nonfinite_total})
        if cfg.val_every and cfg.data.val and step % cfg.val_every == 0:
            logger.log(step, self.validate())
        if step % cfg.save_every == 0 or step == cfg.max_steps:
            saved = self.save()
            logger.print(f"step {step}: checkpoint {saved}")


def build_train_loader(cfg: TrainConfig, model: SeCModel, rank: int = 0, world_size: int = 1) -> Loader:
    """The recipe's training loader, sized for `model`, holding this process's share of the data."""
    return build_loader(
        cfg.data,
        mode=cfg.model.mode,
        tokenizer=model.tokenizer,
        lvlm_image_size=model.lvlm_image_size,
        sam_image_size=model.sam_image_size,
        num_image_tokens=model.num_image_tokens,
        batch_size=cfg.batch_size,
        rank=rank,
        world_size=world_size,
        seed=cfg.seed,
    )


def _batches(loader: Loader) -> Iterator[Batch]:
    """Batches over epochs without end. Fetching runs outside the global RNG stream: a
    DataLoader draws its workers' base seed from it when an epoch starts, and a resumed run
    starts its epoch at a different point than the uninterrupted run did."""
    empty_epochs = 0
    while empty_epochs < 2:  # one empty epoch is a resume right at an epoch's end
        epoch = iter(loader)
        empty_epochs += 1
        while True:
            with torch.random.fork_rng(devices=[]):
                batch = next(epoch, None)
            if batch is None:
                break
            empty_epochs = 0
            yield batch
    raise RuntimeError(
        "the training data yielded no batch in a whole epoch on this process; data.train needs at "
        "least one shard per process and loader worker (sec-data can split data into more shards)"
    )


def _batch_size(batch: Batch, num_processes: int) -> tuple[int, int]:
    """(samples, LLM tokens) of a step over all processes, assuming equal batches per process."""
    tokens = int(batch.attention_mask.sum()) if isinstance(batch, Stage2Batch) else 0
    return batch.num_samples * num_processes, tokens * num_processes


def _total_peak_flops(accelerator) -> float | None:
    peak = peak_flops(accelerator.device)
    return None if peak is None else peak * accelerator.num_processes
