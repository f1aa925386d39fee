"""Gradients of SAM 2's side ready in the same order in every process, whatever the batch.

DeepSpeed ZeRO-2 reduces gradients in buckets filled in the order parameters' gradients become
ready, and assumes that order is the same in every process (deepspeedai/DeepSpeed#2343). A
stage-2 step runs SAM 2 once per frame of each sample, and samples have different numbers of
frames, so when the mask decoder or memory modules train, the processes' orders differ: the
buckets' collectives then mismatch (gloo: "Received data size doesn't match expected size") or,
where the sizes happen to agree, add up slices of different parameters.

`fixed_gradient_order` hands the forward a view of each such parameter, all made before the
forward starts, in parameter order. Autograd runs a node only after every node created after it
(on one device, it always picks the ready node made last), so each view passes its parameter's
gradient on at the very end of backward, in the reverse of the fixed order, after every other
gradient.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn
from torch.nn.utils.stateless import _reparametrize_module


@contextlib.contextmanager
def fixed_gradient_order(model: nn.Module, prefixes: tuple[str, ...]) -> Iterator[None]:
    """Within the block, `model`'s trainable parameters under `prefixes` get their gradients at
    the end of backward, in a fixed order.

    Parameters partitioned by ZeRO-3 (gathered by module hooks at use) are left as they are: a
    view taken before the gather would see an empty partition.
    """
    views = {
        name: param.view_as(param)
        for name, param in model.named_parameters()
        if param.requires_grad and name.startswith(prefixes) and not hasattr(param, "ds_id")
    }
    with _reparametrize_module(model, views):
        yield
