"""Shared by the convert tests: the original InternVL2_5-4B layout, and running a plan on shapes."""

import torch


def original_internvl_4b_shapes() -> dict[str, tuple[int, ...]]:
    """InternVL2_5-4B's own state dict, written out from its modeling code: InternViT-300M
    (24 layers, fused qkv, layer scales ls1/ls2), the mlp1 projector, Qwen2.5-3B."""
    vit, ff, llm, kv, mlp, vocab = 1024, 4096, 2048, 256, 11008, 151674
    shapes = {
        "vision_model.embeddings.class_embedding": (1, 1, vit),
        "vision_model.embeddings.patch_embedding.weight": (vit, 3, 14, 14),
        "vision_model.embeddings.patch_embedding.bias": (vit,),
        "vision_model.embeddings.position_embedding": (1, 1 + 32 * 32, vit),
        "mlp1.0.weight": (4 * vit,),
        "mlp1.0.bias": (4 * vit,),
        "mlp1.1.weight": (llm, 4 * vit),
        "mlp1.1.bias": (llm,),
        "mlp1.3.weight": (llm, llm),
        "mlp1.3.bias": (llm,),
        "language_model.model.embed_tokens.weight": (vocab, llm),
        "language_model.model.norm.weight": (llm,),
        "language_model.lm_head.weight": (vocab, llm),
    }
    for i in range(24):
        layer = f"vision_model.encoder.layers.{i}."
        shapes |= {
            layer + "attn.qkv.weight": (3 * vit, vit),
            layer + "attn.qkv.bias": (3 * vit,),
            layer + "attn.proj.weight": (vit, vit),
            layer + "attn.proj.bias": (vit,),
            layer + "ls1": (vit,),
            layer + "ls2": (vit,),
            layer + "mlp.fc1.weight": (ff, vit),
            layer + "mlp.fc1.bias": (ff,),
            layer + "mlp.fc2.weight": (vit, ff),
            layer + "mlp.fc2.bias": (vit,),
        }
        shapes |= {layer + f"norm{n}.{p}": (vit,) for n in (1, 2) for p in ("weight", "bias")}
    for i in range(36):
        layer = f"language_model.model.layers.{i}."
        shapes |= {
            layer + "self_attn.q_proj.weight": (llm, llm),
            layer + "self_attn.q_proj.bias": (llm,),
            layer + "self_attn.k_proj.weight": (kv, llm),
            layer + "self_attn.k_proj.bias": (kv,),
            layer + "self_attn.v_proj.weight": (kv, llm),
            layer + "self_attn.v_proj.bias": (kv,),
            layer + "self_attn.o_proj.weight": (llm, llm),
            layer + "mlp.gate_proj.weight": (mlp, llm),
            layer + "mlp.up_proj.weight": (mlp, llm),
            layer + "mlp.down_proj.weight": (llm, mlp),
            layer + "input_layernorm.weight": (llm,),
            layer + "post_attention_layernorm.weight": (llm,),
        }
    return shapes


def run_on_meta(steps, shapes) -> dict[str, torch.Size]:
    """Output shapes of a plan, running its combine functions on meta tensors."""
    tensors = {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}
    return {key: tensor.shape for key, tensor in apply_plan(steps, tensors).items()}


def apply_plan(steps, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A plan run on an in-memory state dict."""
    return {step.target: step.apply([tensors[key] for key in step.sources]) for step in steps}
