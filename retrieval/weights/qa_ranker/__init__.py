"""The learned QA option ranker (ranker.json) and its model card; loaded by retrieval.ranker."""
