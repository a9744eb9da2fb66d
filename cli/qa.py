"""`microtheory qa`: answer multiple-choice questions with proofs grounded in a corpus (+ a microtheory)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from cli.common import echo_json, engine_option, workers_option


def qa(
    corpus: Path = typer.Option(..., "--corpus", "-c", help="Knowledge store folder of the corpus."),
    questions: str = typer.Option(..., "--questions", "-q",
                                  help="Questions JSONL: {id, stem, options: {A: ...}, answer_key?} (ARC lines "
                                       "too), or eb:dev / eb:train."),
    out: Path = typer.Option(..., "--out", "-o", help="Output JSONL: one record per input question, written as "
                                                      "answered; rerun to resume."),
    microtheory: Optional[Path] = typer.Option(None, "--microtheory", "-m",
                                               help="Microtheory: a store folder, or a facts JSONL file. Its facts "
                                                    "join the proof search; the ranker reads the corpus's "
                                                    "evidence alone, as it was trained."),
    scorer: Optional[str] = typer.Option(None, "--scorer", help="Scorer folder, or 'overlap' (default: shipped)."),
    k: Optional[int] = typer.Option(None, "--k", help="Facts retrieved per option and store (default: shipped search)."),
    singles: Optional[int] = typer.Option(None, "--singles", help="One-premise sets scored (per proved option)."),
    max_pairs: Optional[int] = typer.Option(None, "--max-pairs", help="Two-premise sets scored (per proved option)."),
    max_triples: Optional[int] = typer.Option(None, "--max-triples", help="Three-premise sets scored (per proved option)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Entailment threshold of a proof (default: the grounding policy shipped with the ranker; with --ranker none the scorer's)."),
    ranker: str = typer.Option("shipped", "--ranker",
                               help="Option ranker: shipped (learned on EntailmentBank train questions, reads SmolLM2's "
                                    "preference among the options), fast (the same without the LM: ~2.4x faster, "
                                    "~1 point less accurate on held-out train questions), a folder "
                                    "holding ranker.json, or none (the hand rule: grounded first, then proof "
                                    "score plus --w-retrieval x retrieval cosine)."),
    w_retrieval: float = typer.Option(0.0, "--w-retrieval",
                                      help="With --ranker none: weight of the best retrieval cosine."),
    force: bool = typer.Option(False, "--force", help="Start OUT afresh when it is not a QA output of this "
                                                      "configuration (its content is lost)."),
    engine: str = engine_option(),
    workers: Optional[int] = workers_option(),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
) -> None:
    """Turn each option into a hypothesis, retrieve facts for it (dense + BM25), and answer with the option
    the learned ranker scores best from that evidence; then, when the ranker is confident enough, search
    premise sets that entail the chosen option: the answer is grounded when one passes the entailment
    threshold (and, where the policy asks, entails it more than any other option). The proof is in the
    record; threshold, confidence and search are the grounding policy chosen with the ranker on train
    questions (its MODEL_CARD.md). --ranker none proves every option instead.

    A bad input line becomes an error record and the run goes on. OUT records the configuration it
    was made with; a rerun with the same one skips the questions already answered.

    Example: microtheory qa --corpus runs/worldtree --questions questions.jsonl --out answers.jsonl
    """
    from core.engine import make_engine
    from microtheory.datasets import load_question_set
    from retrieval.qa import QAConfig, prover_config_for, qa_files

    # Unset options keep the search the ranker's grounding policy was chosen with (on train).
    pcfg = prover_config_for(ranker, k=k, singles=singles, max_pairs=max_pairs, max_triples=max_triples,
                             threshold=threshold)
    summary = qa_files(corpus, load_question_set(questions), out, microtheory=microtheory, scorer=scorer,
                       config=QAConfig(ranker=ranker, w_retrieval=w_retrieval), prover_config=pcfg,
                       progress=not no_progress and not json_out, force=force,
                       engine=make_engine(engine, workers))
    if json_out:
        echo_json(summary.to_json())
    else:
        _print_table(summary.to_json(), out)


def _print_table(s: dict[str, Any], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    t = Table(title=f"qa: {s['questions']} questions -> {out}")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("accuracy", f"{pct(s['accuracy'])} ({s['correct']}/{s['keyed']})")
    t.add_row("grounding rate", f"{pct(s['grounding_rate'])} ({s['grounded']}/{s['answered']})")
    t.add_row("accuracy of grounded answers", pct(s["grounded_accuracy"]))
    t.add_row("retrieval-only baseline accuracy", pct(s["retrieval_baseline_accuracy"]))
    t.add_row("error records", str(s["errors"]))
    t.add_row("answered now / already in OUT", f"{s['written']} / {s['skipped']}")
    t.add_row("questions/s", "-" if s["questions_per_s"] is None else str(s["questions_per_s"]))
    Console().print(t)
