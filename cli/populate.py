"""`microtheory populate`: fill a knowledge store with verified model-generated sentences."""
from __future__ import annotations

from pathlib import Path

import typer

from cli.common import echo_json, engine_option, registry_help, workers_option
from microtheory.generators.base import GENERATORS


def populate_cmd(
    questions: str = typer.Option(..., "--questions", "-q",
                                  help="Questions JSONL (with answer keys or hypotheses), or eb:train / eb:dev."),
    store: Path = typer.Option(..., "--store", "-s", help="Knowledge store folder (created when missing)."),
    generator: str = typer.Option(..., "--generator", "-g", metavar="NAME:ARG",
                                  help=registry_help("Generator backend and its argument", GENERATORS)),
    split: str | None = typer.Option(None, "--split", help="Only questions whose 'split' field is this (e.g. train)."),
    corpus: Path | None = typer.Option(None, "--corpus",
                                       help="A store to retrieve prompt and grounding facts from (default: --store)."),
    scorer: str | None = typer.Option(None, "--scorer", help="Scorer folder, or 'overlap' (default: shipped)."),
    encoder: str | None = typer.Option(None, "--encoder", help="Encoder of a new store (default: MiniLM)."),
    log: Path | None = typer.Option(None, "--log", help="Status log JSONL (default: STORE.populate.jsonl)."),
    prompts: str = typer.Option("fewshot,retrieval", "--prompts", help="Prompt ids: direct, fewshot, retrieval."),
    samples: int = typer.Option(3, "--samples", "-n", help="Candidates per prompt per statement."),
    temperature: float = typer.Option(0.7, "--temperature"),
    top_p: float = typer.Option(0.95, "--top-p"),
    max_tokens: int = typer.Option(96, "--max-tokens"),
    seed: int | None = typer.Option(0, "--seed", help="Sampling seed (where the backend honours one)."),
    max_depth: int = typer.Option(1, "--max-depth", help="0: decompose the hypothesis only; d: recurse to depth d."),
    node_budget: int = typer.Option(6, "--node-budget", help="Statements sent to the generator per question."),
    max_proofs: int = typer.Option(3, "--max-proofs", help="Accepted proofs kept per question."),
    threshold: float | None = typer.Option(None, "--threshold", help="Acceptance threshold (default: the scorer's)."),
    minimal: bool = typer.Option(True, "--minimal/--no-minimal",
                                 help="Prune accepted sets to the premises the entailment needs; reject restatements."),
    limit: int | None = typer.Option(None, "--limit", help="Attempt at most this many questions in this run."),
    retry_unproved: bool = typer.Option(False, "--retry-unproved", help="Also redo questions logged as unproved."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds one HTTP request may take (openai backend)."),
    retries: int = typer.Option(3, "--retries", help="Retries per HTTP request, exponential backoff with jitter."),
    request_budget: float = typer.Option(60.0, "--request-budget",
                                         help="Seconds one request may take with all its retries (openai backend)."),
    breaker: int = typer.Option(4, "--breaker", help="Stop the run after this many failed HTTP attempts in a row "
                                                     "(openai backend; 0: never)."),
    breaker_seconds: float = typer.Option(45.0, "--breaker-seconds",
                                          help="Stop the run when the server has not answered for this many "
                                               "seconds (openai backend)."),
    save_every: int = typer.Option(10, "--save-every", help="Questions between store saves."),
    max_failures: int = typer.Option(20, "--max-failures",
                                     help="Stop after this many failed questions in a row (0: never)."),
    record: Path | None = typer.Option(None, "--record",
                                       help="Append every generator answer to this JSONL (replay it later with "
                                            "--generator replay:FILE to re-score without the model)."),
    force: bool = typer.Option(False, "--force", help="Restart a log made with another configuration (the store's "
                                                      "facts stay; questions are redone)."),
    engine: str = engine_option(),
    workers: int | None = workers_option(),
    concurrency: int = typer.Option(4, "--concurrency",
                                    help="--engine ray: questions in flight per worker (concurrent requests to "
                                         "the server; their verifications are scored together)."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
) -> None:
    """Generate premise sets for each question's hypothesis, keep the ones the entailment scorer
    accepts, and add their sentences and proofs to the store. Rerunning skips questions already
    done and retries failed ones; the log records the configuration, and a rerun with another one
    is refused unless --force. A dead generator server stops the run within a minute (--breaker).
    With --engine ray, workers prove questions (--concurrency at a time each) against --corpus, or
    the store as saved when the run started; this process stores the proofs and writes the log.

    Example: microtheory populate --questions eb:dev --store runs/ks --generator openai:http://127.0.0.1:8080/v1
    """
    from functools import partial

    from core.engine import make_engine
    from microtheory.datasets import load_question_set
    from microtheory.populate import GeneratorSettings, PopulateConfig, PopulateOptions, populate

    cfg = PopulateConfig(prompts=tuple(p.strip() for p in prompts.split(",") if p.strip()), samples=samples,
                         temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed, max_depth=max_depth,
                         node_budget=node_budget, max_proofs=max_proofs, threshold=threshold, minimal=minimal,
                         save_every=save_every, max_consecutive_failures=max_failures)
    http = GeneratorSettings(timeout=timeout, retries=retries, request_budget=request_budget, breaker=breaker,
                             breaker_seconds=breaker_seconds, record=record)
    opts = PopulateOptions(log_path=log, retry_unproved=retry_unproved, limit=limit, force=force,
                           engine=make_engine(engine, workers), concurrency=concurrency,
                           make_generator=partial(http.make, generator))
    summary = populate(load_question_set(questions, split=split), store, http.make(generator), scorer=scorer,
                       encoder=encoder, config=cfg, corpus=corpus, options=opts, progress=not no_progress)
    if json_out:
        echo_json(summary.to_json())
    else:
        for line in summary.lines():
            typer.echo(line)
    if summary.aborted:
        raise typer.Exit(6)
