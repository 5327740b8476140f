"""HouseBrain: LoRA fine-tuning of a small causal LM that turns house requirements into design JSON.

Where things live:

    design/      the JSON contract (schema.py), validate_design (validator.py), plane geometry, SVG/OBJ/GLB
    data/        procedural generator (chat JSONL), chat tokenisation + loss masks + packing, shards, DataModule
    models/      offline model loading (HF dir or GGUF, tiny test Llama), LoRA adapters, constrained decoding
    evaluation.py  masked loss, eval loss, scoring generated designs (parse / schema / validator / fields)
    merging.py   exact average/weighted LoRA merges, best, peft ties/dare; report
    task.py      HouseDesignSFT, the LightningModule
    tools.py     `mtl housebrain <verb>`: generate, split, validate, design, merge, tiny-model

User guide: docs/housebrain.md.
"""
