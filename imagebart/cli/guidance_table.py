"""``scripts/guidance_table.py``: a class-conditional chain's quality against guidance scale and acceptance rate.

The paper's class-conditional ImageNet row (FID 21.19 with all samples, 13.12 / 9.77 / 7.44 keeping
the best 50% / 25% / 5% by a classifier), measured the same way on any class chain, plus
classifier-free guidance scales. Every setting draws ``n`` class-balanced images (n / C of each
class) and reports FID, KID, precision / recall against ``--reference`` and the classifier
accuracy of the samples (how often the classifier sees the class they were drawn for).

Acceptance rates share one pool of candidates per class (guidance 1): rate a keeps the best n_c of
the first ⌈n_c / a⌉ candidates, which with ``--batch_size`` dividing n_c / a are exactly the
candidates ``scripts/sample.py --acceptance_rate a`` would draw with the same seed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Optional, Sequence

import torch

from imagebart.cli.common import (HelpFormatter, add_table_arguments, docstring_epilog, parse_scale_values, resolve_device,
                                  run_command, write_table)

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/guidance_table.py", description=__doc__.splitlines()[0],
                                     formatter_class=HelpFormatter,
                                     epilog=docstring_epilog(__doc__))
    parser.add_argument("--config", default="configs/sampling/demo_class.yaml", help="class-conditional sampling config")
    parser.add_argument("--classifier", default="demo", help="'demo' or a classifier YAML (acceptance and accuracy)")
    parser.add_argument("--reference", default="demo:validation", help="reference image set for FID etc.")
    parser.add_argument("--features", default="demo", choices=("demo", "inception"), help="feature network")
    parser.add_argument("--feature_weights", default=None, help="weights of the feature network (demo: the shipped)")
    parser.add_argument("--inception_weights", default=None, help="--features inception: the local weights file")
    parser.add_argument("-n", "--n_samples", type=int, default=200, help="images per setting (balanced over classes)")
    parser.add_argument("--acceptance_rates", default="1,0.5,0.25,0.05", help="comma-separated acceptance rates")
    add_table_arguments(parser, "1,1.5,2,3,5")
    return parser


@torch.no_grad()
def measure(images: torch.Tensor, labels: torch.Tensor, network, reference, classifier, batch_size: int) -> dict:
    """Metrics of images (N, 3, H, W) drawn for ``labels`` (N,); accuracy and p(class) by ``classifier``."""
    from imagebart.evaluation.metrics import all_metrics

    features, logits, verdicts = [], [], []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        out = network(batch)
        features.append(out["features"].double().cpu())
        logits.append(out["logits"].double().cpu())
        verdicts.append(classifier(batch).double().softmax(1).cpu())
    metrics = all_metrics(reference, torch.cat(features), torch.cat(logits))
    probs = torch.cat(verdicts)  # (N, C)
    metrics["class_accuracy"] = float((probs.argmax(1) == labels).double().mean())
    metrics["class_score"] = float(probs.gather(1, labels[:, None]).mean())  # mean p(label)
    return metrics


def run(args) -> list:
    from imagebart.cli.evaluate import feature_network
    from imagebart.evaluation.classifier import load_classifier
    from imagebart.evaluation.image_sets import extract
    from imagebart.evaluation.metrics import ReferenceStats
    from imagebart.sampling.acceptance import (candidate_batches, candidate_seed, candidates_needed, check_rate,
                                               concat, draw_candidate_batch, keep_best)
    from imagebart.sampling.batch import batch_seed
    from imagebart.sampling.chain import ImageBARTChain

    scales = parse_scale_values(args.guidance_scales, "--guidance_scales")
    rates = [check_rate(r, "--acceptance_rates values") for r in parse_scale_values(args.acceptance_rates,
                                                                                     "--acceptance_rates")]
    device = resolve_device(args.device)
    chain = ImageBARTChain.from_sampling_config(args.config, device=device)
    if not chain.is_conditional:
        raise ValueError(f"--config {args.config}: the chain is unconditional; this table needs a class chain")
    classes = chain.n_classes
    if args.n_samples % classes:
        raise ValueError(f"-n {args.n_samples} must be a multiple of the {classes} classes")
    per_class = args.n_samples // classes
    classifier = load_classifier(args.classifier, device)
    network = feature_network(args).to(device)
    reference = ReferenceStats.from_features(extract(network, args.reference, None, 100, device)[0],
                                             feature_name=args.features)
    labels = torch.arange(classes).repeat_interleave(per_class)  # (n,) class-balanced
    rows = []

    def record(kind, value, images, seconds, extra=None):
        row = {"setting": kind, "value": value, "seconds": round(seconds, 1), **(extra or {}),
               **measure(images.to(device), labels, network, reference, classifier, 100)}
        logger.info("%s %s: FID %.2f, precision %.3f, recall %.3f, class accuracy %.3f", kind, value, row["fid"],
                    row["precision"], row["recall"], row["class_accuracy"])
        rows.append(row)

    # acceptance rates: one pool of candidates per class, guidance 1
    start = time.time()
    pool = {}
    for c in range(classes):
        count = candidates_needed(per_class, min(rates))
        pool[c] = concat([draw_candidate_batch(chain, classifier, c, stop - first, candidate_seed(args.seed, c, j))
                          for j, (first, stop) in enumerate(candidate_batches(count, args.batch_size))])
    pool_seconds = time.time() - start
    for rate in rates:
        kept = [pool[c].tokens[keep_best(pool[c].scores[:candidates_needed(per_class, rate)], per_class)]
                for c in range(classes)]
        images = torch.cat([chain.decode(t.to(device)).float().cpu() for t in kept])
        record("acceptance_rate", rate, images, pool_seconds, {"candidates": candidates_needed(per_class, rate) * classes})
    # guidance scales: fresh balanced samples, batch k seeded from (seed, k) as scripts/sample.py does
    for scale in scales:
        start, images = time.time(), []
        for k, first in enumerate(range(0, args.n_samples, args.batch_size)):
            part = labels[first:first + args.batch_size]
            result = chain.sample(len(part), class_label=part, guidance_scale=scale,
                                  generator=chain.make_generator(batch_seed(args.seed, k)))
            images.append(result.images.cpu())
        record("guidance_scale", scale, torch.cat(images), time.time() - start)
    if args.out:
        write_table(args.out, args, rows, markdown(rows))
    return rows


def markdown(rows: list) -> str:
    lines = ["| setting | value | FID | KID x1000 | precision | recall | class accuracy | mean p(class) | candidates |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['setting'].replace('_', ' ')} | {r['value']:g} | {r['fid']:.2f} | {1000 * r['kid_mean']:.2f} "
                     f"| {r['precision']:.3f} | {r['recall']:.3f} | {r['class_accuracy']:.3f} | {r['class_score']:.3f} "
                     f"| {r.get('candidates', r['n_samples'])} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    _, rows = run_command(get_parser, run, argv)
    sys.stdout.write(markdown(rows))
    return 0
