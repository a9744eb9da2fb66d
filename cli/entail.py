"""`microtheory entail`: train, evaluate and use the entailment scorer."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from cli.common import echo_json

app = typer.Typer(help="Train, evaluate and run the cross-encoder entailment scorer.", no_args_is_help=True)


def _layers(spec: str | None) -> tuple[int, ...] | None:
    if spec is None or spec.strip().lower() in ("", "all"):
        return None
    from core.errors import InputError

    try:
        return tuple(int(x) for x in spec.split(","))
    except ValueError:
        raise InputError(f"--lora-layers must be 'all' or comma-separated layer numbers, got {spec!r}") from None


def _data_config(seed: int, neg_per_pos: int, recipe: int) -> Any:
    from core.errors import InputError
    from microtheory.entail_data import DataConfig

    if recipe not in (1, 2):
        raise InputError(f"--recipe must be 1 or 2, got {recipe}")
    return DataConfig(seed=seed, neg_per_pos=neg_per_pos, harder=recipe == 2)


@app.command("train")
def train_cmd(
    out: Path = typer.Option(Path("runs/entail"), "--out", help="Folder for the adapter, log and checkpoints."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="The shared data folder (default ../shared/data)."),
    epochs: float = typer.Option(1.0, help="Passes over the training examples."),
    batch_size: int = typer.Option(16, "--batch-size"),
    lr: float = typer.Option(3e-4, help="Peak learning rate (linear warm-up and decay)."),
    max_length: int = typer.Option(128, "--max-length", help="Tokens per (premises, hypothesis) pair."),
    lora_rank: int = typer.Option(16, "--lora-rank"),
    lora_layers: str = typer.Option("all", "--lora-layers", help="'all' or e.g. '2,3,4,5' (fewer = faster on CPU)."),
    base: str = typer.Option("minilm", "--base", help="Base model: minilm, mpnet (packaged), a folder or a hub name."),
    recipe: int = typer.Option(1, "--recipe", help="Example recipe: 1, or 2 (adds the harder negatives)."),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", help="Minutes; then checkpoint and stop "
                                               "(continue with --resume)."),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--no-bf16", help="Autocast (default: where the hardware "
                                        "has it; MICROTHEORY_BF16=0 turns it off)."),
    seed: int = typer.Option(13, help="Seeds the example recipe, data order, initialisation and dropout."),
    neg_per_pos: int = typer.Option(2, "--neg-per-pos", help="Hard negatives kept per positive."),
    max_examples: Optional[int] = typer.Option(None, "--max-examples", help="Seeded subsample of the training examples."),
    heldout: float = typer.Option(0.1, help="Share of train trees held out to choose the threshold."),
    checkpoint_every: int = typer.Option(50, "--checkpoint-every", help="Steps between checkpoints."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps"),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint (same options)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda when available)."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Fine-tune the scorer on examples built from the EntailmentBank train trees.

    Example: microtheory entail train --out runs/entail --max-examples 9000 --lora-layers 2,3,4,5 --threads 2

    On MPNet with the harder negatives, in sessions: microtheory entail train --base mpnet --recipe 2
    --neg-per-pos 3 --out runs/entail-mpnet --time-limit 50 (then the same command with --resume)
    """
    import time

    from microtheory.entail_data import run_train
    from retrieval.entail_train import TrainConfig, TrainStop, base_name

    tcfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, max_length=max_length, lora_rank=lora_rank,
                       lora_alpha=2.0 * lora_rank, lora_layers=_layers(lora_layers), seed=seed,
                       checkpoint_every=checkpoint_every, max_steps=max_steps, device=device, num_threads=threads,
                       base_model=base_name(base), autocast=bf16)
    stop = TrainStop(deadline=time.time() + 60 * time_limit) if time_limit else None
    res = run_train(out, data_dir, tcfg, _data_config(seed, neg_per_pos, recipe), heldout_fraction=heldout,
                    max_examples=max_examples, resume=resume, stop=stop)
    summary = {"out": str(res.out_dir), "steps": res.steps, "seconds": round(res.seconds, 1),
               "threshold": res.threshold, "heldout": res.heldout}
    if json_out:
        echo_json(summary)
    else:
        h = res.heldout
        typer.echo(f"saved {res.out_dir} after {res.steps} steps ({res.seconds:.0f}s); threshold {res.threshold:.3f}; "
                   f"held-out train F1 {h['f1']:.3f} F0.5 {h['f0.5']:.3f} AUROC {h['auroc']:.3f}")


@app.command("eval")
def eval_cmd(
    scorer: Optional[Path] = typer.Option(None, "--scorer", help="Scorer folder, 'mpnet' (packaged, opt-in), or "
                                          "cascade:FOLDER|mpnet (the shipped scorer prunes for that one) "
                                          "(default: the shipped weights)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="The shared data folder (default ../shared/data)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the full results JSON here."),
    heldout: Optional[Path] = typer.Option(None, "--heldout", help="Held-out TRAIN examples JSONL for baseline thresholds."),
    max_dev: Optional[int] = typer.Option(None, "--max-dev", help="Seeded subsample of the dev examples."),
    no_baselines: bool = typer.Option(False, "--no-baselines"),
    int8: bool = typer.Option(False, "--int8", help="Also score with dynamic int8 linear layers (CPU speed)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads (1 is fastest on a busy machine)."),
    seed: int = typer.Option(13, help="The recipe seed (as used in training)."),
    neg_per_pos: int = typer.Option(2, "--neg-per-pos"),
    recipe: int = typer.Option(1, "--recipe", help="Example recipe of the dev examples: 1, or 2 (harder negatives)."),
    compare: list[Path] = typer.Option([], "--compare", help="Another scorer folder scored on the same examples "
                                       "(repeat; 'shipped' = the packaged weights)."),
    json_out: bool = typer.Option(False, "--json", help="Print the results JSON instead of the table."),
) -> None:
    """Measure the scorer on examples built from the EntailmentBank dev trees, against two baselines.

    Example: microtheory entail eval --out runs/entail_eval.json
    """
    from core.jsonl import atomic_write_json
    from microtheory.entail_data import run_eval
    from retrieval.entail import SHIPPED_DIR

    if threads:
        import torch

        torch.set_num_threads(threads)
    log = None if json_out else (lambda s: typer.echo(s, err=True))
    others = {f"cross-encoder ({'shipped' if str(c) == 'shipped' else c})": SHIPPED_DIR if str(c) == "shipped" else c
              for c in compare}
    res = run_eval(scorer, data_dir, heldout, _data_config(seed, neg_per_pos, recipe), max_dev=max_dev,
                   baselines=not no_baselines, int8=int8, log=log, compare=others)
    if out:
        atomic_write_json(out, res)
    if json_out:
        echo_json(res)
        return
    typer.echo(f"dev examples: {res['dev_examples']} ({res['dev_positives']} positive); {res['dev_source']}")
    typer.echo(f"{'system':30} {'thr':>7} {'P':>6} {'R':>6} {'F1':>6} {'F0.5':>6} {'AUROC':>6} {'pairs/s':>8}")
    for name, m in res["systems"].items():
        typer.echo(f"{name:30} {m['threshold']:7.3f} {m['precision']:6.3f} {m['recall']:6.3f} {m['f1']:6.3f} "
                   f"{m['f0.5']:6.3f} {m['auroc']:6.3f} {m['dev_pairs_per_s']:8.1f}")
        typer.echo("    accuracy by kind: " + ", ".join(f"{k} {v['accuracy']:.2f}" for k, v in m["by_kind"].items()))
        if m.get("stages"):
            typer.echo("    pairs scored last by stage: " + ", ".join(f"{k} {v}" for k, v in m["stages"].items()))
    if out:
        typer.echo(f"wrote {out}")


@app.command("fit-cascade")
def fit_cascade_cmd(
    strong: str = typer.Option("mpnet", "--strong", help="The strong stage: a scorer folder or 'mpnet' (packaged)."),
    heldout: Optional[Path] = typer.Option(None, "--heldout", help="Held-out TRAIN examples JSONL (default: the "
                                           "heldout_examples.jsonl training wrote beside the strong scorer); never dev."),
    force: bool = typer.Option(False, "--force", help="Replace a cascade.json already in the strong scorer's folder."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Fit how `cascade:STRONG` decides: the shipped scorer prunes, then its score and the strong one's are
    mixed (logits, the strong weight and the threshold chosen for F1 on held-out train examples).
    Writes STRONG/cascade.json, which `cascade:STRONG` then reads.

    Example: microtheory entail fit-cascade --strong runs/entail-mpnet
    """
    from retrieval.entail import ALIASES, CASCADE_MIX_NAME, SHIPPED_DIR, load_scorer
    from retrieval.entail_train import fit_cascade_mix, is_scorer_dir, read_examples

    folder = Path(ALIASES.get(strong, strong))
    if not is_scorer_dir(folder):
        typer.echo(f"error: --strong {folder}: not a scorer folder (no entail_config.json / adapter)", err=True)
        raise typer.Exit(2)
    target = folder / CASCADE_MIX_NAME
    if target.exists() and not force:
        typer.echo(f"error: {target} exists (written by an earlier fit); add --force to replace it", err=True)
        raise typer.Exit(1)
    hp = heldout or folder / "heldout_examples.jsonl"
    if not hp.is_file():
        typer.echo(f"error: {hp}: no held-out train examples; give --heldout (the file training writes)", err=True)
        raise typer.Exit(2)
    if threads:
        import torch

        torch.set_num_threads(threads)
    mix, rows = fit_cascade_mix(load_scorer(SHIPPED_DIR), load_scorer(str(folder)), read_examples(hp))
    mix.meta["heldout_file"] = hp.name
    mix.save(target)
    res = {"out": str(target), "strong_weight": mix.strong_weight, "threshold": mix.threshold, "grid": rows}
    if json_out:
        echo_json(res)
        return
    for r in rows:
        typer.echo(f"strong weight {r['strong_weight']:.2f}: held-out F1 {r['f1']:.3f} AUROC {r['auroc']:.3f} "
                   f"(threshold {r['threshold']:.3f})")
    typer.echo(f"wrote {target}: strong weight {mix.strong_weight:g}, threshold {mix.threshold:.3f}")


@app.command("score")
def score_cmd(
    premise: list[str] = typer.Option(..., "--premise", "-p", help="A premise sentence (repeat for several)."),
    hypothesis: str = typer.Option(..., "--hypothesis", help="The sentence to prove."),
    scorer: Optional[str] = typer.Option(None, "--scorer", help="Scorer folder, 'overlap', 'mpnet', or "
                                         "'cascade:FOLDER|mpnet' (the shipped scorer prunes for that one) "
                                         "(default: shipped)."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """P(premises entail hypothesis) and the decision at the scorer's threshold.

    Example: microtheory entail score -p "a dog is a kind of mammal" -p "mammals are warm-blooded"
    --hypothesis "a dog is warm-blooded"
    """
    from retrieval.entail import load_scorer

    sc = load_scorer(scorer)
    p = sc.score(premise, hypothesis)
    rec = {"premises": premise, "hypothesis": hypothesis, "score": p, "threshold": sc.threshold,
           "entailed": bool(p >= sc.threshold)}
    stages = getattr(sc, "last_stages", None)
    if stages:
        rec["stage"] = stages[0]
    if json_out:
        echo_json(rec)
    else:
        typer.echo(f"{p:.4f} {'entailed' if rec['entailed'] else 'not entailed'} (threshold {sc.threshold:.3f})"
                   + (f"; scored by the {rec['stage']} stage" if stages else ""))
