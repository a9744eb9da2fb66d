"""`microtheory critique`: critique model explanations; build the synthetic data; train and evaluate the critic.

The group's default command is `run` (`microtheory critique INPUT --out OUT`, the batch critique):
it is registered on this `app` by the batch-critique module (second engineer); this module owns
`data`, `train` and `eval`.
"""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from cli.common import default_group, echo_json, engine_option, registry_help, workers_option
from critique.batch import BACKENDS

app = typer.Typer(
    cls=default_group("run"),
    help="Critique model explanations in the Digital Socrates format, and build / train / evaluate the critic.",
    no_args_is_help=True,
)


@app.command("data")
def data_cmd(
    split: str = typer.Option("train", help="EntailmentBank split to inject flaws into: train or dev."),
    out: Path = typer.Option(..., "--out", help="JSONL file to write (one FlawExample a line)."),
    seed: int = typer.Option(0, help="Seeds every recipe choice; same seed, same data."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="The shared data folder (default ../shared/data)."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Write the synthetic flaw-injection examples of one split (labels are synthetic, see docs/critique_data.md).

    Example: microtheory critique data --split dev --out runs/critique_dev.jsonl
    """
    from collections import Counter

    from critique.flaws import build_split, write_examples

    ex = build_split(split, seed=seed, data_dir=data_dir)
    n = write_examples(out, ex)
    counts = dict(Counter(e.dimension for e in ex))
    if json_out:
        echo_json({"out": str(out), "n": n, "split": split, "seed": seed, "per_dimension": counts})
    else:
        typer.echo(f"wrote {n} {split} examples to {out}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


@app.command("train")
def train_cmd(
    out: Path = typer.Option(Path("runs/critic"), "--out", help="Folder for the critic, log.jsonl, checkpoint."),
    base: Optional[str] = typer.Option(None, help="Base encoder: a Hugging Face name or path (default: the packaged MiniLM)."),
    seed: int = typer.Option(0, help="Seeds data building, sampling, initialisation, order."),
    epochs: float = typer.Option(1.0, help="Passes over the training examples."),
    batch_size: int = typer.Option(16, "--batch-size"),
    lr: float = typer.Option(1e-4, help="Peak learning rate of the encoder layers (warm-up, linear decay)."),
    head_lr: float = typer.Option(1e-3, "--head-lr", help="Peak learning rate of the heads."),
    max_length: int = typer.Option(192, "--max-length", help="Tokens per input (question, options, answers, explanation)."),
    train_layers: int = typer.Option(3, "--train-layers", help="Top encoder layers fine-tuned (>= layer count: all)."),
    max_examples: Optional[int] = typer.Option(None, "--max-examples", help="Seeded subsample of the train examples."),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", help="Stop and save after this long."),
    train_file: Optional[Path] = typer.Option(None, "--train-file", help="Train examples JSONL (default: build from train trees)."),
    dev_file: Optional[Path] = typer.Option(None, "--dev-file", help="Dev examples JSONL (default: build from dev trees)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="The shared data folder (default ../shared/data)."),
    dev_limit: Optional[int] = typer.Option(None, "--dev-limit", help="Evaluate on the first N dev examples (0: skip)."),
    checkpoint_every: int = typer.Option(50, "--checkpoint-every", help="Steps between checkpoints (OUT/checkpoint)."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda when available, bf16 autocast)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads."),
    aux_features: bool = typer.Option(True, "--aux-features/--no-aux-features",
                                      help="Feed lexical side features (question/option overlap per sentence) to the heads."),
    init: Optional[Path] = typer.Option(None, "--init", help="Warm-start from an earlier critic folder (tensors that fit)."),
    backend: str = typer.Option("classifier", "--backend",
                                help="classifier (fine-tune the encoder critic) or checks (the head over verifier checks)."),
    cache: Path = typer.Option(Path("runs/checks_feats"), "--cache", help="checks: cached check features."),
    train_trees: Optional[int] = typer.Option(None, "--train-trees", min=1,
                                              help="checks: EntailmentBank train trees per flaw recipe "
                                                   "(default: critique.checks_data.DataConfig's)."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Train a critic: the fine-tuned classifier on flaw-injected EntailmentBank train trees (synthetic
    labels), or with `--backend checks` the checks head (synthetic recipes + human acceptability + T5 labels).

    Examples: microtheory critique train --out runs/critic --max-examples 4000 --threads 2 --max-minutes 30
              microtheory critique train --backend checks --out runs/checks --threads 2
    """
    if threads:
        import torch

        torch.set_num_threads(threads)
    if backend == "checks":
        from critique.train import ChecksTrainConfig, train_checks

        summary = train_checks(ChecksTrainConfig(out=str(out), cache=str(cache), seed=seed, train_trees=train_trees,
                                                 data_dir=str(data_dir) if data_dir else None))
        echo_json(summary) if json_out else typer.echo(f"saved {summary['out']} (config {summary['chosen']})")
        return
    from critique.train import TrainConfig, train

    res = train(TrainConfig(out=str(out), base=base, seed=seed, epochs=epochs, batch_size=batch_size, lr=lr,
                            head_lr=head_lr, max_length=max_length, train_layers=train_layers,
                            max_examples=max_examples, max_minutes=max_minutes, train_file=train_file,
                            dev_file=dev_file, data_dir=data_dir, dev_limit=dev_limit,
                            checkpoint_every=checkpoint_every, device=device, threads=threads,
                            progress=not json_out, aux_features=aux_features, init=init))
    summary = {"out": str(res.out), "steps": res.steps, "examples_seen": res.examples_seen,
               "seconds": round(res.seconds, 1), "device": res.device,
               "dev": {k: v for k, v in (res.dev or {}).items() if not isinstance(v, (dict, list))}}
    if json_out:
        echo_json(summary)
    else:
        typer.echo(f"saved {res.out} after {res.steps} steps ({res.seconds:.0f}s on {res.device})")
        if res.dev:
            _table(res.dev)


def _table(m: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"critic on the injected dev set (synthetic labels, n={m['n']})")
    t.add_column("dimension")
    for c in ("precision", "recall", "F1", "support"):
        t.add_column(c, justify="right")
    for lab, r in m["per_dimension"].items():
        t.add_row(lab, f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", str(r["support"]))
    Console(stderr=False).print(t)
    typer.echo(f"dimension accuracy {m['dimension_accuracy']:.3f}  macro-F1 {m['dimension_macro_f1']:.3f}  "
               f"flawed-vs-sound accuracy {m['flawed_vs_sound_accuracy']:.3f}")
    typer.echo(f"flaw-sentence accuracy {m['flaw_sentence_accuracy']:.3f} (n={m['flaw_sentence_n']})  "
               f"score MAE {m['score_mae']:.3f}  exact score {m['score_exact']:.3f}  "
               f"{m['critiques_per_second']:.1f} critiques/s")


@app.command("eval")
def eval_cmd(
    model: Optional[Path] = typer.Option(None, "--model", help="Critic folder (default: the weights shipped in the package)."),
    out: Path = typer.Option(Path("runs/critique_eval.json"), "--out", help="Write the full results JSON here."),
    seed: int = typer.Option(0, help="The data seed (the dev set is built with it)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="The shared data folder (default ../shared/data)."),
    dev_file: Optional[Path] = typer.Option(None, "--dev-file", help="Dev examples JSONL (default: build from the 187 dev trees)."),
    limit: Optional[int] = typer.Option(None, help="Only the first N dev examples."),
    batch_size: int = typer.Option(32, "--batch-size"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads."),
    json_out: bool = typer.Option(False, "--json", help="Print the results JSON instead of the table."),
) -> None:
    """Measure a critic on flaw-injected EntailmentBank dev trees: dimension accuracy and macro-F1,
    flaw-sentence accuracy, score MAE, critiques/s.

    Example: microtheory critique eval --model runs/critic --out runs/critique_eval.json
    """
    import json

    from critique.train import evaluate_dev

    if threads:
        import torch

        torch.set_num_threads(threads)
    res = evaluate_dev(model, seed=seed, data_dir=data_dir, dev_file=dev_file, limit=limit, batch_size=batch_size,
                       progress=not json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    if json_out:
        echo_json(res)
    else:
        _table(res)
        typer.echo(f"wrote {out}")


# ---------------------------------------------------------------------------------------------------
# Batch critique (`run`, the group's default command) and the evaluations against real judgements
# (`eval-human`, `eval-t5`). Owned by the batch-critique engineer: critique/batch.py, critique/evaluate.py.


class CritiqueFormat(str, Enum):
    json = "json"
    ds = "ds"


@app.command("run")
def run_cmd(
    input_path: Path = typer.Argument(..., metavar="INPUT", help="Model outputs JSONL (docs/formats.md)."),
    out: Path = typer.Option(..., "--out", help="Critiques JSONL: one record per input row; rerun to resume."),
    microtheory: Optional[Path] = typer.Option(None, "--microtheory", help="Microtheory folder (facts.jsonl) to ground specific advice in."),
    store: Optional[Path] = typer.Option(None, "--store", help="Knowledge store folder to ground specific advice in."),
    fmt: CritiqueFormat = typer.Option(CritiqueFormat.json, "--format", help="json (structured critique) or ds (the Digital Socrates text block)."),
    backend: str = typer.Option("checks", "--backend", help=registry_help("Critique backend", BACKENDS)),
    fast: bool = typer.Option(False, "--fast", help="checks backend: lexical checks only (no models, no fact checks; many times faster, less accurate)."),
    lm: bool = typer.Option(False, "--lm", help="checks backend: add SmolLM2's likelihood of the explanation to the score (closer to human acceptability; ~1 explanation/s on a 2-core CPU)."),
    model: Optional[str] = typer.Option(None, "--model", help="checks: a head.json; classifier: a critic folder; generative: a HF name / path / .gguf (default SmolLM2)."),
    batch_size: int = typer.Option(32, "--batch-size"),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", help="Generative backend: tokens per critique (greedy)."),
    scorer: Optional[str] = typer.Option(None, "--scorer", help="Entailment scorer for grounded advice (default: the shipped one)."),
    force: bool = typer.Option(False, "--force", help="Start OUT afresh when it is not a critique output of this configuration (its content is lost)."),
    engine: str = engine_option(),
    workers: Optional[int] = workers_option(),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Critique every explanation in INPUT, one output record per row (errors included); resumable.

    OUT records the configuration it was made with (backend, model digest, format, advice); a rerun
    with another one is refused unless --force. A file that is not a critique output is never touched.
    With --workers N (or --engine ray) the rows are critiqued by N worker processes (actors), each loading
    the critic once; this process writes OUT, in input order, so the records are the same. Without
    --workers the full checks use 2 processes from 32 rows while two CPUs are idle, else this process.

    Example: microtheory critique outputs.jsonl --out critiques.jsonl --microtheory runs/mt_arc --format ds
    """
    from core.engine import make_engine
    from critique.batch import CritiqueRunConfig, run_critique

    cfg = CritiqueRunConfig(backend=backend, model=model, fast=fast, lm=lm, fmt=fmt.value, batch_size=batch_size,
                            max_new_tokens=max_new_tokens, microtheory=microtheory, store=store, scorer=scorer,
                            force=force)
    s = run_critique(input_path, out, cfg, progress=not json_out, engine=make_engine(engine, workers))
    if json_out:
        echo_json(s.to_json())
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title="critiques per dimension")
    t.add_column("dimension")
    t.add_column("count", justify="right")
    for dim, n in s.per_dimension.items():
        t.add_row(dim, str(n))
    t.add_row("(error records)", str(s.errors))
    Console().print(t)
    ms = "n/a" if s.mean_score is None else f"{s.mean_score:.2f}"
    sf = "n/a" if s.share_flawed is None else f"{s.share_flawed:.1%}"
    typer.echo(f"{s.out}: {s.rows} rows, {s.written} written now, {s.skipped} already done, {s.errors} error records")
    typer.echo(f"mean score {ms}  share flawed {sf}  ({s.seconds:.1f}s)")


@app.command("eval-human")
def eval_human_cmd(
    model: Optional[Path] = typer.Option(None, "--model", help="Critic folder (default: the shipped weights)."),
    out: Path = typer.Option(Path("runs/critique_eval_human.json"), "--out", help="Results JSON."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="The shared data folder (default ../shared/data)."),
    limit: Optional[int] = typer.Option(None, help="Only the first N instances per dataset."),
    json_out: bool = typer.Option(False, "--json", help="Print the results JSON."),
) -> None:
    """Spearman correlation of the critic's score with the share of annotators who found each
    explanation acceptable (CommonsenseQA, SNLI), next to the GPT-3 likelihood baseline in the files.

    Example: microtheory critique eval-human --out runs/critique_eval_human.json
    """
    import json

    from critique.evaluate import eval_human

    res = eval_human(model, data_dir=data_dir, limit=limit, progress=not json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    if json_out:
        echo_json(res)
        return
    for name, r in res["datasets"].items():
        typer.echo(f"{name}: n={r['n_explanations']} explanations  Spearman(critic score, acceptable share) "
                   f"{r['spearman_critic']:.3f}  GPT-3 -NLL baseline {r['spearman_neg_nll']:.3f}")
    typer.echo(f"wrote {out}")


@app.command("eval-t5")
def eval_t5_cmd(
    model: Optional[Path] = typer.Option(None, "--model", help="Critic folder (default: the shipped weights)."),
    out: Path = typer.Option(Path("runs/critique_eval_t5.json"), "--out", help="Results JSON."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="The shared data folder (default ../shared/data)."),
    json_out: bool = typer.Option(False, "--json", help="Print the results JSON."),
) -> None:
    """AUROC of "flawed" on real T5 proofs of the 187 EntailmentBank dev items (T5-11B / T5-large,
    tasks 1 and 2): proofs whose leaves or steps differ from gold versus proofs that match.

    Example: microtheory critique eval-t5 --out runs/critique_eval_t5.json
    """
    import json

    from critique.evaluate import eval_t5

    res = eval_t5(model, data_dir=data_dir, progress=not json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    if json_out:
        echo_json(res)
        return
    for name, r in res["runs"].items():
        auc = "n/a" if r["auroc_score"] is None else f"{r['auroc_score']:.3f}"
        typer.echo(f"{name}: {r['n_flawed']} flawed / {r['n_match']} matching proofs  AUROC(5 - score) {auc}")
    typer.echo(f"wrote {out}")
