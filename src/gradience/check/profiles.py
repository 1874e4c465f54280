"""Task-profile inference from a dataset name.

The rules differ by profile (reasoning tasks want low lr and attention-only targets;
easy classification wants small ranks), so a profile the user did not state is inferred
from well-known dataset names and reported as such (`set_task_profile`), never silently.
"""

from __future__ import annotations

import re

HARD_REASONING = {
    "gsm8k",
    "gsm",
    "math",
    "mathqa",
    "metamathqa",
    "competition_math",
    "hendrycks_math",
    "aqua",
    "aqua_rat",
    "svamp",
    "asdiv",
    "mawps",
    "strategyqa",
    "bbh",
    "bigbench",
    "big_bench",
    "big_bench_hard",
    "arc",
    "ai2_arc",
    "arc_challenge",
    "logiqa",
    "proofwriter",
    "folio",
    "theoremqa",
    "mmlu",
    "minerva",
}
EASY_CLASSIFICATION = {
    "sst",
    "sst2",
    "glue",
    "mnli",
    "qnli",
    "qqp",
    "mrpc",
    "rte",
    "cola",
    "wnli",
    "snli",
    "imdb",
    "ag_news",
    "agnews",
    "yelp",
    "yelp_polarity",
    "amazon_polarity",
    "rotten_tomatoes",
    "emotion",
    "tweet_eval",
    "trec",
    "dbpedia",
    "dbpedia_14",
    "banking77",
    "boolq",
}
GENERATION = {
    "cnn_dailymail",
    "xsum",
    "samsum",
    "alpaca",
    "dolly",
    "databricks_dolly_15k",
    "oasst1",
    "sharegpt",
    "ultrachat",
    "wikitext",
    "e2e_nlg",
    "webnlg",
    "openwebtext",
}
# A more specific family wins: "glue/sst2" is classification, "ai2_arc" is reasoning.
_ORDER = (
    ("hard_reasoning", HARD_REASONING),
    ("generation", GENERATION),
    ("easy_classification", EASY_CLASSIFICATION),
)


def _candidates(name: str) -> set[str]:
    """Path parts, their `_`/`-` joined and split forms, and each token without trailing digits."""
    text = name.strip().lower()
    parts = [p for p in re.split(r"[/\\:\s]+", text) if p]
    out: set[str] = set()
    for part in parts:
        joined = re.sub(r"[-.]", "_", part)
        out.update({part, joined, joined.replace("_", "")})
        for tok in re.split(r"[^a-z0-9]+", part):
            if tok:
                out.update({tok, tok.rstrip("0123456789")})
    return out - {""}


def infer_task_profile(dataset_name: str | None) -> str | None:
    """The profile a dataset name implies, or None when the name is unknown or missing."""
    if not dataset_name:
        return None
    cands = _candidates(dataset_name)
    hits = [profile for profile, names in _ORDER if cands & names]
    if not hits:
        return None
    # "glue" alone must not outvote a specific reasoning name in the same string
    return hits[0]
