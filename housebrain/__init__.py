"""HouseBrain: LoRA fine-tuning of a small causal LM that turns house requirements into design JSON.

Where things live:

    design/      the JSON contract (schema.py), validate_design (validator.py), plane geometry, SVG/OBJ/GLB
    data/        request-first generator (chat JSONL), tokenisation + loss masks + BFD packing, accumulation
                 windows, shards, DataModule
    models/      offline model loading (HF dir or GGUF, tiny test Llama), LoRA adapters, base identity by
                 content, per-sample attention, constrained decoding
    evaluation.py  masked loss, eval loss, scoring generated designs (parse / schema / validator / fields)
    merging.py   average/weighted/best/TIES/DARE merges on the LoRA deltas; report
    gguf_export.py  merged model -> Q8_0/F16 GGUF
    task.py      HouseDesignSFT, the LightningModule (a BaseTask)
    tools.py     `mtl housebrain <verb>`: generate, split, validate, design, merge, export-gguf, tiny-model

User guide: docs/housebrain.md.
"""
