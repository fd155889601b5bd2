"""`robustft train`, `eval`, `export` and `run`: fine-tuning on the cleaned set, and what comes with it."""

from __future__ import annotations

import argparse

from .common import add_run_dir, data_help, settings_given
from .flags import add_setting_flags, setting_values


def add_train(sub) -> None:
    p = sub.add_parser("train", help="fine-tune a model with LoRA (TRL SFTTrainer + PEFT) on a fine-tuning set",
                       description="Supervised fine-tuning on denoised.jsonl (or any CSV/JSONL/dataset folder with "
                                   "question and answer columns). Prompt: the base expert's question prompt; "
                                   "completion: 'Answer: X'; loss on the completion only. Writes the LoRA adapter, "
                                   "the tokenizer, train_config.json and train_summary.json to --out; re-running "
                                   "with the same --out resumes from the last checkpoint. Several GPUs: "
                                   "accelerate launch -m robustft train ...")
    p.add_argument("--out", metavar="DIR", help="output directory for the adapter and records")
    p.add_argument("--config", metavar="FILE", help="YAML config; its train: section sets the training settings")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_setting_flags(p, "train")
    p.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..finetune.train import describe_training, train

    config = load_config(args.config, settings_given(args, "train"))
    result = train(config, out=args.out, progress=not args.quiet)
    print(describe_training(result))
    return 0


def add_eval(sub) -> None:
    p = sub.add_parser("eval", help="test-set accuracy of a model (server, or local with a LoRA adapter)",
                       description="Ask each test question with the base expert's prompt (greedy decoding) and check "
                                   "the answer with the task's checker. --model NAME --base-url URL: an "
                                   "OpenAI-compatible server (vllm serve; for an adapter: --enable-lora "
                                   "--lora-modules NAME=DIR, then --model NAME). --model PATH: a local transformers "
                                   "model, with --adapter DIR for a LoRA adapter from `robustft train`. Prints the "
                                   "accuracy; writes predictions.jsonl and result.json to --out.")
    p.add_argument("--data", metavar="SOURCE", help="labeled test set: " + data_help())
    p.add_argument("--adapter", metavar="DIR", help="LoRA adapter directory (robustft train --out) for a local model")
    p.add_argument("--out", metavar="DIR", help="where predictions.jsonl and result.json go (default: "
                   "ADAPTER/eval-<data name>, or runs/eval/<model>-<data name>)")
    p.add_argument("--config", metavar="FILE", help="YAML config (data columns, eval: settings, model:)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_setting_flags(p, "eval")
    p.set_defaults(handler=_eval)


def _eval(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..finetune.evaluate import describe_eval, evaluate

    given = setting_values(args, "eval")  # the model and the row limit are evaluate()'s own arguments
    model, base_url, limit = given.pop("model.name"), given.pop("model.base_url"), given.pop("data.limit")
    config = load_config(args.config, given)
    result = evaluate(config, data=args.data, model=model, base_url=base_url, adapter=args.adapter,
                      out=args.out, limit=limit, progress=not args.quiet)
    print(describe_eval(result))
    return 0


def add_export(sub) -> None:
    p = sub.add_parser("export", help="write the fine-tuning set in the input's own format, or for other trainers",
                       description="robustft export RUN_DIR writes the fine-tuning set of a denoise run in the "
                                   "format of its input (default --format input): a messages file comes back as a "
                                   "messages file with only the corrected assistant turns changed, ShareGPT as "
                                   "ShareGPT, Alpaca as Alpaca, a table with the same columns and the answer "
                                   "replaced; dropped samples are left out. --format messages|alpaca|hf writes the "
                                   "prompt/completion pairs `robustft train` uses instead: chat messages JSONL, "
                                   "Alpaca JSON, or a Hugging Face dataset folder in TRL's prompt-completion format. "
                                   "Without RUN_DIR, --data FILE (denoised.jsonl or labeled data) and --out give "
                                   "those pairs.")
    add_run_dir(p, metavar="RUN_DIR", nargs="?")
    p.add_argument("--data", metavar="SOURCE", help="with RUN_DIR: the input the run read, when it has moved; "
                   "without: denoised.jsonl, or labeled data: " + data_help())
    p.add_argument("--out", metavar="PATH", help="file or folder to write; its suffix picks the file type "
                   "(.jsonl, .json, .csv, .tsv, .parquet; otherwise a save_to_disk folder). Default with RUN_DIR: "
                   "RUN_DIR/export/<the input's name>")
    p.add_argument("--format", choices=["input", "messages", "alpaca", "hf"],
                   help="input: the input's own format (default with RUN_DIR); messages, alpaca, hf: training "
                        "pairs (default without RUN_DIR: from --out, .jsonl messages, .json alpaca, otherwise hf)")
    p.add_argument("--config", metavar="FILE", help="without RUN_DIR: YAML config (data columns, instruction, "
                   "prompts_dir); a run directory carries its own")
    add_setting_flags(p, "export")
    p.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..errors import ConfigError
    from ..finetune.export import export, export_run

    given = setting_values(args, "export")
    limit = given.pop("data.limit")
    if args.dir is not None:
        if args.config or limit:
            raise ConfigError("--config and --limit are not used with RUN_DIR: the run's own configuration says "
                              "what it read")
        result = export_run(args.dir, out=args.out, fmt=args.format, data=args.data,
                            data_overrides={k.split(".", 1)[1]: v for k, v in given.items()})
    else:
        if args.data is None or args.out is None:
            raise ConfigError("pass the run directory (robustft export RUN_DIR), or --data FILE and --out PATH")
        config = load_config(args.config, {"data.limit": limit, **given})
        result = export(config, data=args.data, out=args.out, fmt=args.format)
    print(result.describe())
    return 0


def add_run(sub) -> None:
    p = sub.add_parser("run", help="one experiment: denoise -> train -> eval, with the paper's baselines",
                       description="Denoise the noisy training set, fine-tune train.model with LoRA on the result, "
                                   "and evaluate it on experiment.test_data, next to the model as it is and SFT on "
                                   "the noisy labels; ends with a table of test accuracies (results.json, "
                                   "results.md). Re-running resumes. See examples/paper/.")
    p.add_argument("config", metavar="CONFIG", help="YAML config with data, model, train, eval and experiment sections")
    p.add_argument("--out", metavar="DIR", help="experiment directory (default: out: in the config)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_setting_flags(p, "run")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..finetune.experiment import run_experiment

    config = load_config(args.config, setting_values(args, "run"))
    result = run_experiment(config, out=args.out, progress=not args.quiet)
    print(f"\nTest accuracy on {result.results['test_data']}\n\n{result.table}\n")
    print(f"results: {result.out_dir / 'results.json'}  (table: {result.out_dir / 'results.md'})")
    return 0
