"""``jasrbench download DATASET --to DIR``: fetch a public dataset, checked, then say what to run next.

The command line only: what exists is in ``catalogue.py``, how it is fetched
(resume, SHA-256, safe extraction, one run per folder) in ``fetch.py``.
``--url-base URL`` (or ``$JASRBENCH_DOWNLOAD_MIRROR``) fetches every file as
``URL/NAME`` from a mirror (``file:///dir`` for a local copy); checksums still apply.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import JasrbenchError
from .catalogue import CATALOGUE, DEFAULT_SOURCE, MANUAL, get_source
from .fetch import Options, fetch

MIRROR_ENV = "JASRBENCH_DOWNLOAD_MIRROR"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Download a public dataset (300W, LFW) into DIR: resumable, SHA-256 checked, archives "
        "extracted with path checks, layout verified. HELEN and AFLW must be obtained by hand "
        "(the command says how). See datasets/raw/README.md."
    )
    parser.add_argument("dataset", nargs="?", metavar="DATASET", type=str.lower,
                        help="300w | lfw (helen, aflw: prints how to obtain them)")
    parser.add_argument("--to", type=Path, default=None, metavar="DIR",
                        help="destination folder (default: datasets/raw/DATASET)")
    parser.add_argument("--source", default=None,
                        help="where from: 300w: ibug (official, default) or dlib; lfw: official")
    parser.add_argument("--url-base", default=os.environ.get(MIRROR_ENV) or None, metavar="URL",
                        help=f"fetch every file as URL/FILENAME from a mirror (default: ${MIRROR_ENV}); checksums still apply")
    parser.add_argument("--accept-unverified", action="store_true",
                        help="continue with files that have no published SHA-256 (their hash is printed and stored)")
    parser.add_argument("--remove-archives", action="store_true",
                        help="delete the downloaded archives after a successful extraction")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="S", help="network timeout in seconds")
    parser.add_argument("--retries", type=int, default=5, help="retries of a failing transfer (with backoff)")
    parser.add_argument("--list", action="store_true", help="print the catalogue and exit")


def _print_catalogue() -> None:
    for dataset, sources in CATALOGUE.items():
        for name, src in sources.items():
            default = " (default)" if DEFAULT_SOURCE[dataset] == name else ""
            print(f"{dataset} --source {name}{default}: {src.description}\n  page: {src.page}\n  terms: {src.terms}")
            for rf in src.files:
                print(f"  {rf.name}: {' , '.join(rf.urls)}")
                print(f"    sha256: {rf.sha256 or 'none published'}" + (f", {rf.size} bytes" if rf.size else ""))
                print(f"    {rf.checksum_source}")
    for dataset, text in MANUAL.items():
        print(f"{dataset}: {text}")


def run(args: argparse.Namespace) -> int:
    if args.list:
        _print_catalogue()
        return 0
    if not args.dataset:
        raise JasrbenchError(f"name a DATASET ({', '.join(sorted([*CATALOGUE, *MANUAL]))}) or use --list")
    source = get_source(args.dataset, args.source)
    to = args.to if args.to is not None else Path("datasets") / "raw" / source.dataset
    opts = Options(timeout=args.timeout, retries=args.retries, accept_unverified=args.accept_unverified,
                   url_base=args.url_base, remove_archives=args.remove_archives)
    lines = fetch(source, to, opts)
    print(f"{source.dataset} is in {Path(to).absolute()}:")
    for line in lines:
        print(f"  {line}")
    print(f"next: jasrbench prepare {source.dataset} --raw {to} --out datasets/prepared/{source.dataset}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    from ..cli import main

    sys.exit(main(["download", *sys.argv[1:]]))
