"""The `microtheory` command line: one typer app, a thin module per command group."""
