"""A genomics-style pipeline: align → call → annotate, three arrays chained N_TO_N.

    mnp submit examples/genomics.py --follow         # or: python examples/genomics.py

Each array has one child per sample (``SAMPLES``); child *i* of ``call`` starts as soon as
child *i* of ``align`` SUCCEEDED, without waiting for the other samples (AWS's N_TO_N), and
likewise ``annotate`` after ``call``. The biology is fake, the file I/O real: in the shared
directory, each sample gets ``sample-<i>/reads.fastq`` and ``aligned.tsv`` (align),
``variants.vcf`` (call) and ``annotated.tsv`` (annotate).

The shared directory is ``$MNP_SHARED/genomics`` when ``MNP_SHARED`` is set, else a fresh one
under the temporary directory. The steps need only the standard library: each job runs this
file with the step's name.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

SAMPLES = 4
GENOME_LENGTH = 2000
READS = 300
READ_LENGTH = 50
SEED_LENGTH = 12
GENES = [("abcA", 0, 600), ("xyzB", 600, 1300), ("qrsC", 1300, GENOME_LENGTH)]
"""(name, start, end): where the fake genome's genes lie."""


def reference() -> str:
    """The same fake reference genome for every step."""
    rng = random.Random(0)
    return "".join(rng.choice("ACGT") for _ in range(GENOME_LENGTH))


def sample_dir() -> tuple[int, Path]:
    index = int(os.environ["AWS_BATCH_JOB_ARRAY_INDEX"])
    path = Path(os.environ["WORK"]) / f"sample-{index}"
    path.mkdir(parents=True, exist_ok=True)
    return index, path


def align() -> int:
    """Sequence the sample (reads with its own mutations) and place each read on the
    reference by its first ``SEED_LENGTH`` bases."""
    index, here = sample_dir()
    ref = reference()
    rng = random.Random(1000 + index)
    genome = list(ref)
    for pos in rng.sample(range(GENOME_LENGTH), 5):  # the sample's own variants
        genome[pos] = rng.choice([b for b in "ACGT" if b != genome[pos]])
    with open(here / "reads.fastq", "w") as fastq:
        for r in range(READS):
            start = rng.randrange(GENOME_LENGTH - READ_LENGTH)
            seq = "".join(genome[start : start + READ_LENGTH])
            fastq.write(f"@s{index}r{r}\n{seq}\n+\n{'I' * READ_LENGTH}\n")
    seeds: dict[str, int] = {}
    for pos in range(GENOME_LENGTH - SEED_LENGTH + 1):
        seeds.setdefault(ref[pos : pos + SEED_LENGTH], pos)
    lines = (here / "reads.fastq").read_text().splitlines()
    placed = 0
    with open(here / "aligned.tsv", "w") as out:
        for name, seq in zip(lines[0::4], lines[1::4], strict=True):
            pos = seeds.get(seq[:SEED_LENGTH])
            if pos is not None:
                out.write(f"{name[1:]}\t{pos}\t{seq}\n")
                placed += 1
    print(f"sample {index}: {placed} of {READS} reads aligned")
    return 0


def call() -> int:
    """Pile the aligned reads up and call a variant where at least two reads agree on a base
    other than the reference's."""
    index, here = sample_dir()
    ref = reference()
    pileup: dict[int, Counter[str]] = {}
    for line in (here / "aligned.tsv").read_text().splitlines():
        _, pos, seq = line.split("\t")
        for offset, base in enumerate(seq):
            pileup.setdefault(int(pos) + offset, Counter())[base] += 1
    with open(here / "variants.vcf", "w") as vcf:
        vcf.write("#CHROM\tPOS\tREF\tALT\tDEPTH\n")
        called = 0
        for pos in sorted(pileup):
            base, count = pileup[pos].most_common(1)[0]
            if base != ref[pos] and count >= 2:
                vcf.write(f"fake1\t{pos + 1}\t{ref[pos]}\t{base}\t{sum(pileup[pos].values())}\n")
                called += 1
    print(f"sample {index}: {called} variants called")
    return 0


def annotate() -> int:
    """Name the gene each variant falls in."""
    index, here = sample_dir()
    rows = (here / "variants.vcf").read_text().splitlines()[1:]
    genes: Counter[str] = Counter()
    with open(here / "annotated.tsv", "w") as out:
        out.write("POS\tREF\tALT\tGENE\n")
        for row in rows:
            _, pos, ref, alt, _ = row.split("\t")
            gene = next(g for g, start, end in GENES if start < int(pos) <= end)
            genes[gene] += 1
            out.write(f"{pos}\t{ref}\t{alt}\t{gene}\n")
    summary = ", ".join(f"{g} {n}" for g, n in sorted(genes.items())) or "none"
    print(f"sample {index}: annotated {len(rows)} variants ({summary})")
    return 0


STEPS = {"align": align, "call": call, "annotate": annotate}

if __name__ == "__main__" and sys.argv[1:] and sys.argv[1] in STEPS:
    sys.exit(STEPS[sys.argv[1]]())  # a step, run as a job: the standard library only

from mnp import ArrayJob, NToN, submit  # noqa: E402 - the steps above run without mnp

SHARED = os.environ.get("MNP_SHARED")
WORK = Path(SHARED, "genomics") if SHARED else Path(tempfile.mkdtemp(prefix="mnp-genomics-"))
THIS = str(Path(__file__).resolve())


def step(name: str, after: ArrayJob | None) -> ArrayJob:
    return ArrayJob(
        name,
        [sys.executable, THIS, name],
        size=SAMPLES,
        environment={"WORK": str(WORK)},
        depends_on=[NToN(after)] if after is not None else [],
    )


aligned = step("align", None)
called = step("call", aligned)
JOBS = [aligned, called, step("annotate", called)]

if __name__ == "__main__":
    print(f"shared directory: {WORK}")
    submit(JOBS).wait()
