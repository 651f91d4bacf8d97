"""Every code block of the documentation runs here, so the docs cannot rot.

Pages: ``README.md`` and ``docs/**/*.md``. Each fenced block is one test, named
``page:line`` (the line of its opening fence). The blocks of a page run in order in one
working folder that holds the files the docs name (built once by :func:`docs_data`), and its
``python`` blocks share one namespace, as a reader following the page would.

What runs, by the block's language:

- ``python``: executed (``exec``) in the page's namespace and folder;
- ``sh``, ``bash``, ``console``: each command (in ``console`` blocks only ``$ `` lines; the rest
  is output): ``tlcore ...`` through :func:`tlcore.cli.main` (``tlcore bench`` in a
  subprocess), expected to exit 0 unless a directive says otherwise; ``cd DIR``; ``rm FILE``;
  ``pytest`` (a subprocess, in a plugin's folder with its entry point installed beside it);
  anything else fails unless the block is marked skip;
- ``yaml``: parsed; a config whose ``_target_`` is tlcore's is instantiated with Hydra;
- ``toml``, ``json``: parsed; ``csv``: parsed, every row as wide as the header;
- ``text`` or no language: output shown to the reader, not run (an untagged block that looks
  like code fails :func:`test_every_block_has_a_runner_or_is_output`).

Directives, an HTML comment on the line(s) right before the block (blank lines between are
fine), invisible on the site:

- ``<!-- docs-test: skip (reason) -->``: not run; reported as skipped with the reason. Only for
  what cannot run in a test: ``make demo``, ``pip install``, training for minutes, cloud
  credentials.
- ``<!-- docs-test: file PATH -->``: the block's text is written to PATH (relative to the page's
  folder) instead of being run; later blocks use it (a manifest, a plugin's source file).
- ``<!-- docs-test: exit N -->``: every ``tlcore`` command of the block exits with status N.
- ``<!-- docs-test: needs testdata -->``: the block reads real sample files
  (``../shared/testdata``, linked under the names the docs use); skipped without them, like
  the other tests that need them.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTDATA = Path(os.environ.get("TLCORE_TESTDATA", ROOT.parent / "shared" / "testdata"))
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

RUN = {"python", "sh", "bash", "console", "yaml", "toml", "json", "csv"}
OUTPUT = {"", "text"}
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)[^\n]*$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<body>.*?)\s*-->\s*$")

# Real sample files under the names the docs use (linked into the page folders when the
# shared test data is there).
TESTDATA_NAMES = {
    "scan.lif": "lif/PR2729_frameOrderCombinedScanTypes.lif",
    "movie.nd2": "nd2/example-timelapse.nd2",
    "flim.ome.tif": "ome-tiff/FLIM-modulo-sample.ome.tif",
}


@dataclass
class Block:
    page: str  # relative to the repository root
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    directives: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    def directive(self, name: str) -> str | None:
        for d in self.directives:
            if d == name or d.startswith(name + " "):
                return d[len(name) :].strip()
        return None


def parse_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page, with the directives right before each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    page = path.relative_to(ROOT).as_posix()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        start = i
        body = []
        i += 1
        while i < len(lines):
            stripped = lines[i].strip()
            if stripped.startswith(fence[0] * len(fence)) and set(stripped) == {fence[0]}:
                break
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        directives = []
        j = start - 1
        while j >= 0 and (not lines[j].strip() or _DIRECTIVE.match(lines[j])):
            d = _DIRECTIVE.match(lines[j])
            if d:
                directives.insert(0, d["body"])
            j -= 1
        blocks.append(Block(page, start + 1, m["lang"].lower(), "\n".join(body) + "\n", directives))
    return blocks


BLOCKS = [b for page in PAGES for b in parse_blocks(page)]
CODE_BLOCKS = [b for b in BLOCKS if b.lang not in OUTPUT or b.directive("file") is not None]


# --- the files the docs name ------------------------------------------------------------------


@pytest.fixture(scope="session")
def docs_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files the docs' examples open, written once (small: the whole set is a few MB)."""
    import zarr

    from tlcore.testing import write_ome_zarr

    data = tmp_path_factory.mktemp("docs-data")
    # A 2-D timelapse like the nd2 sample: 53 frames 0.50016 s apart, 0.325 um pixels.
    write_ome_zarr(data / "movie.ome.zarr", shape=(53, 64, 64), axes="tyx",
                   interval_s=0.50016, pixel_sizes_um=(1.0, 0.325, 0.325))  # fmt: skip
    # Two 3-D timelapses for training examples, and a manifest over them.
    for i, name in enumerate(("exp1.ome.zarr", "exp2.ome.zarr")):
        write_ome_zarr(data / name, shape=(6, 2, 16, 144, 144), chunks=(1, 1, 16, 72, 72),
                       n_levels=2, seed=i, channel_names=["GFP", "DAPI"])  # fmt: skip
    (data / "manifest.csv").write_text(
        "path,channel,split,start,stop\n"
        "exp1.ome.zarr,0,train,0,-1\n"
        'exp2.ome.zarr,"0,1",train,0,4\n'
        "exp2.ome.zarr,0,val,4,-1\n"
    )
    # A multi-scene pyramid: a bioformats2raw collection of two images with three levels.
    plate = zarr.open_group(str(data / "plate.zarr"), mode="w-", zarr_format=3)
    plate.attrs["bioformats2raw.layout"] = 3
    for i in range(2):
        write_ome_zarr(data / "plate.zarr" / str(i), shape=(4, 2, 8, 256, 256), n_levels=3,
                       seed=i)  # fmt: skip
    _write_tiffs(data)
    _write_czi(data)
    return data


def _write_tiffs(data: Path) -> None:
    import numpy as np
    import tifffile

    rng = np.random.default_rng(0)
    # A plain stack of 10 pages without metadata: read as T unless tiff_dims says otherwise.
    tifffile.imwrite(data / "stack.tif", rng.integers(0, 4000, (10, 64, 80), dtype=np.uint16))


def _write_czi(data: Path) -> None:
    try:
        from tlcore_czi.testing import write_czi
    except ImportError:  # the plugin's writer (pylibCZIrw) is not installed
        return
    import numpy as np

    pixels = np.random.default_rng(0).integers(0, 4000, (3, 1, 2, 128, 160), dtype=np.uint16)
    write_czi(data / "mosaic.czi", [pixels], tiles=(1, 2))


@dataclass
class PageRun:
    folder: Path
    cwd: Path
    namespace: dict[str, Any]
    failed: str | None = None
    done: set[str] = field(default_factory=set)


_RUNS: dict[str, PageRun] = {}


def _page_run(block: Block, data: Path, tmp_path_factory: pytest.TempPathFactory) -> PageRun:
    run = _RUNS.get(block.page)
    if run is None:
        folder = tmp_path_factory.mktemp(re.sub(r"\W+", "-", block.page))
        for item in data.iterdir():
            if item.is_dir():
                (folder / item.name).symlink_to(item, target_is_directory=True)
            else:
                (folder / item.name).write_bytes(item.read_bytes())
        (folder / "configs").symlink_to(ROOT / "configs", target_is_directory=True)
        if TESTDATA.is_dir():
            for name, relative in TESTDATA_NAMES.items():
                if (TESTDATA / relative).exists():
                    (folder / name).symlink_to(TESTDATA / relative)
        namespace = {"__name__": "docs_" + re.sub(r"\W+", "_", block.page)}
        run = _RUNS[block.page] = PageRun(folder, folder, namespace)
    return run


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


# --- the tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("block", CODE_BLOCKS, ids=lambda b: b.id)
def test_block(block: Block, docs_data: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    reason = block.directive("skip")
    if reason is not None:
        pytest.skip(f"{block.id}: docs-test skip {reason}".strip())
    if block.directive("needs testdata") is not None and not TESTDATA.is_dir():
        pytest.skip(f"{block.id}: needs the shared test data ({TESTDATA}); set TLCORE_TESTDATA")
    run = _page_run(block, docs_data, tmp_path_factory)
    if run.failed is not None:
        pytest.fail(f"not run: an earlier block of this page failed ({run.failed})")
    # A block selected alone (-k, a test id) first runs the page's earlier blocks it builds on.
    for earlier in CODE_BLOCKS:
        if earlier.page == block.page and earlier.line < block.line:
            _run_once(earlier, run)
    _run_once(block, run)


def _run_once(block: Block, run: PageRun) -> None:
    if block.id in run.done or block.directive("skip") is not None:
        return
    if block.directive("needs testdata") is not None and not TESTDATA.is_dir():
        return
    try:
        _run_block(block, run)
    except BaseException:
        run.failed = block.id
        raise
    run.done.add(block.id)


def _run_block(block: Block, run: PageRun) -> None:
    target = block.directive("file")
    if target is not None:
        path = run.cwd / target
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            path.unlink()
        path.write_text(block.text)
        return
    if block.lang == "python":
        code = compile(block.text, block.id, "exec")
        with _cwd(run.cwd):
            exec(code, run.namespace)
    elif block.lang in ("sh", "bash", "console"):
        _run_shell(block, run)
    elif block.lang == "yaml":
        _run_yaml(block, run)
    elif block.lang == "toml":
        tomllib.loads(block.text)
    elif block.lang == "json":
        json.loads(block.text)
    elif block.lang == "csv":
        rows = list(csv.reader(io.StringIO(block.text)))
        widths = {len(r) for r in rows if r}
        assert len(widths) == 1, f"{block.id}: CSV rows of different widths {widths}"
    else:
        raise AssertionError(f"{block.id}: no runner for a {block.lang!r} block")


def _commands(block: Block) -> list[str]:
    lines = block.text.splitlines()
    if block.lang == "console":
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    joined: list[str] = []
    for line in lines:
        if joined and joined[-1].endswith("\\"):
            joined[-1] = joined[-1][:-1] + " " + line.strip()
        else:
            joined.append(line.strip())
    return [c for c in joined if c and not c.startswith("#")]


def _run_shell(block: Block, run: PageRun) -> None:
    expected = int(block.directive("exit") or 0)
    for command in _commands(block):
        for part in command.split("&&"):
            argv = shlex.split(part, comments=True)
            if not argv:
                continue
            if argv[0] == "tlcore" and argv[1:2] == ["bench"]:
                # Benchmarks fork workers, freeze the GC and set dask's scheduler globally:
                # not in the test process.
                done = subprocess.run(
                    [sys.executable, "-m", "tlcore.cli", *argv[1:]], cwd=run.cwd,
                    capture_output=True, text=True, timeout=300,
                )  # fmt: skip
                assert done.returncode == expected, f"{block.id}: {part}:\n{done.stderr[-3000:]}"
            elif argv[0] == "tlcore":
                code, out = _tlcore(argv[1:], run.cwd)
                assert code == expected, (
                    f"{block.id}: `{part.strip()}` exited {code}, expected {expected}:\n{out}"
                )
            elif argv[0] == "cd" and len(argv) == 2:
                run.cwd = (run.cwd / argv[1]).resolve()
                assert run.cwd.is_dir(), f"{block.id}: no folder {run.cwd}"
            elif argv[0] == "pytest":
                _pytest(block, run.cwd, argv[1:])
            elif argv[0] == "rm" and len(argv) == 2 and not argv[1].startswith(("/", "-")):
                (run.cwd / argv[1]).unlink()
            else:
                raise AssertionError(
                    f"{block.id}: `{part.strip()}` cannot run in the docs tests (only tlcore, "
                    "cd, rm FILE and pytest do): mark the block <!-- docs-test: skip (reason) -->"
                )


def _tlcore(argv: list[str], cwd: Path) -> tuple[int, str]:
    from tlcore.cli import main

    out = io.StringIO()
    with _cwd(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: --help, usage errors
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue()


def _pytest(block: Block, cwd: Path, args: list[str]) -> None:
    """pytest in a plugin's folder, installed the way pip would leave it without touching the
    environment: its src folder plus a dist-info with its entry points, on PYTHONPATH."""
    site = cwd / ".docs-site"
    pyproject = cwd / "pyproject.toml"
    paths = [str(site), str(cwd / "src")]
    if pyproject.exists():
        project = tomllib.loads(pyproject.read_text())["project"]
        info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
        )
        groups = project.get("entry-points", {})
        (info / "entry_points.txt").write_text(
            "".join(
                f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items())
                for group, eps in groups.items()
            )
        )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "TLCORE_DISABLE_READERS": ""}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=cwd, capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    tail = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 0, f"{block.id}: pytest failed in {cwd}:\n{tail}"
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, tail


def _run_yaml(block: Block, run: PageRun) -> None:
    import yaml

    config = yaml.safe_load(block.text)
    target = config.get("_target_", "") if isinstance(config, dict) else ""
    if str(target).startswith("tlcore."):
        import hydra.utils
        from omegaconf import OmegaConf

        with _cwd(run.cwd):
            made = hydra.utils.instantiate(OmegaConf.create(config))
        assert made is not None


def test_every_block_has_a_runner_or_is_output() -> None:
    """Blocks in a language nothing runs, untagged blocks that look like code, and directives
    that are not understood fail here."""
    problems = []
    for b in BLOCKS:
        if b.lang not in RUN | OUTPUT:
            problems.append(f"{b.id}: a {b.lang!r} block: nothing runs it (tag output as text)")
        first = b.text.lstrip().split("\n", 1)[0]
        if b.lang == "" and re.match(r"(\$ )?(tlcore|import|from|pip|make) ", first):
            problems.append(f"{b.id}: an untagged block that looks like code: tag its language")
        for d in b.directives:
            if not re.match(r"(skip|file|exit|needs testdata)\b", d):
                problems.append(f"{b.id}: unknown directive {d!r}")
    assert not problems, "\n".join(problems)


def test_docs_inventory_is_mostly_run() -> None:
    """Skipping is the exception: most code blocks run."""
    skipped = [b for b in CODE_BLOCKS if b.directive("skip") is not None]
    assert CODE_BLOCKS, "no code blocks found"
    assert len(skipped) * 4 < len(CODE_BLOCKS), [b.id for b in skipped]


def test_the_site_builds_strict(tmp_path: Path) -> None:
    """`make docs`: MkDocs with --strict (a broken link, a page outside the nav or a docstring
    the reference cannot parse is an error)."""
    pytest.importorskip("mkdocs", reason="the docs extra is not installed")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
