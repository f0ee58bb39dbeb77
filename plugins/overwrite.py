"""Attack ``overwrite``: piracy (EWE §6.2). The attacker embeds a watermark of their own, with any registered
scheme, into the stolen model, hoping to blur the owner's claim or to stake a counter-claim."""

from __future__ import annotations

import json

import numpy as np

from wmtool.api import Attack, AttackJob, AttackOutcome, EmbedJob, Option, hookimpl, json_object, resolve

WMTOOL_API_VERSION = 1

OPTIONS = (
    Option("scheme", str, "backdoor", "the attacker's watermarking scheme (any registered embedder)"),
    Option("scheme_options", str, "{}", "JSON object of that scheme's options, e.g. '{\"source\": 3, \"target\": 5}'"),
)


def run(job: AttackJob) -> AttackOutcome:
    """Embed the attacker's watermark into the victim with the named scheme."""
    p = job.params
    embedder = job.registry.get("embedder", p["scheme"])
    given = json_object(p["scheme_options"], "--scheme-options")
    params = resolve(embedder.options, given, f"embedder {p['scheme']}")
    outcome = embedder.embed(EmbedJob(job.victim, True, job.data, params, job.registry, job.seed, job.device,
                                      job.progress))
    inputs, labels = outcome.arrays.get("inputs"), outcome.arrays.get("labels")
    success = float(np.mean(outcome.model.predict(inputs) == labels)) if inputs is not None else None
    return AttackOutcome(outcome.model, details={"scheme": p["scheme"], "attacker_watermark_success": success,
                                                 "attacker_params": json.loads(json.dumps(outcome.params))})


@hookimpl
def register_attacks(register):
    """Register ``overwrite``."""
    register(Attack("overwrite", "piracy: embed the attacker's own watermark with any registered scheme", run,
                    OPTIONS))
