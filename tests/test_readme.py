"""Every ``bash`` and ``python`` block of README.md runs as written, in order: the README cannot drift.

The conventions (for whoever adds a README section):

* **What runs.** Every fenced block whose language is ``bash``, ``sh``, ``shell`` or ``python``, in document
  order. Other fences (```` ```text ````, ```` ```json ````, a bare ```` ``` ````) are not code and are
  not run: use them for output and file contents, never for commands a reader should paste.
* **Where.** In a fresh "clone": a temporary directory whose entries link to the repository's (``.venv``,
  ``Makefile``, ``examples/``...) without its ``.nexus``, so the default home ``.nexus`` is new, as after
  ``git clone`` and ``make up``.
* **``<!-- readme-test: background -->``** on the line before a block: the block starts a long-running
  process (``make up``). The test starts it before any section runs, waits until the home's
  ``runtime.json`` names a gateway that answers ``/healthz``, keeps it running through every section,
  and stops it at the end with SIGINT (Ctrl-C) to its process group, by PID. Every other block therefore
  runs next to a running ``nexus up``, as for a reader who ran ``make up`` in one terminal and pastes the
  rest in another.
* **Ports.** That ``nexus up`` gets free ports (``NEXUS_PORT``, ``NEXUS_MONITOR_PORT``); the documented
  default addresses ``127.0.0.1:8765`` (gateway) and ``127.0.0.1:5006`` (monitor) in the blocks are
  replaced by them. Nothing else in a block is changed.
* **Sections.** One test per ``##`` section, in order (``pytest -k`` picks one, but later sections may
  rely on earlier ones). Each ``bash`` block runs in its own ``bash -e -o pipefail`` (a new terminal:
  variables do not carry over to the next block) and must exit 0. The ``python`` blocks of a section
  run one after another in ONE Jupyter kernel (the ``nexus`` kernelspec), as cells of one notebook; an
  error in any of them fails the section, naming the block.
* **Skips.** ``<!-- readme-test: skip output -->`` (the block shows output, not commands) and
  ``<!-- readme-test: skip outside <service> -->`` (it needs a service outside this machine, e.g. the
  Groq API) are the only skips allowed; each is counted and printed. Any other ``readme-test`` marker
  fails the test.
* **Limits.** ``BLOCK_TIMEOUT`` seconds per block.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK_TIMEOUT = 240.0
UP_TIMEOUT = 120.0
LANGUAGES = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python"}
DEFAULT_GATEWAY, DEFAULT_MONITOR = "127.0.0.1:8765", "127.0.0.1:5006"
_FENCE = re.compile(r"^```([\w+-]*)\s*$")
_MARKER = re.compile(r"^<!--\s*readme-test:\s*(.*?)\s*-->\s*$")
_SKIPS = re.compile(r"^skip (output|outside \S.*)$")


@dataclass
class Block:
    section: str
    line: int  # 1-based line of the opening fence
    language: str  # "bash" or "python"
    code: str
    marker: str = ""

    @property
    def where(self) -> str:
        return f"README.md:{self.line} ({self.section})"


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


def parse(text: str) -> list[Section]:
    """The README's ``##`` sections and their runnable blocks (with the marker on the line before each)."""
    sections = [Section("(top)")]
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            sections.append(Section(line[3:].strip()))
        fence = _FENCE.match(line)
        if fence:
            start, body = i, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            language = LANGUAGES.get(fence.group(1).lower())
            if language:
                before = lines[start - 1] if start else ""
                marker = _MARKER.match(before)
                sections[-1].blocks.append(Block(sections[-1].title, start + 1, language, "\n".join(body) + "\n",
                                                 marker.group(1) if marker else ""))
        elif _MARKER.match(line) and not (i + 1 < len(lines) and _FENCE.match(lines[i + 1])):
            raise AssertionError(f"README.md:{i + 1}: a readme-test marker must sit right above a fenced block")
        i += 1
    return [s for s in sections if s.blocks]


SECTIONS = parse(README.read_text(encoding="utf-8"))
SUMMARY: dict[str, list[str]] = {"run": [], "skipped": [], "background": []}


def test_the_conventions_are_what_the_parser_sees(tmp_path: Path) -> None:
    """The parser finds blocks, markers and sections as documented above (a made-up README)."""
    text = ("# T\n\n## One\n\n<!-- readme-test: background -->\n```bash\nmake up\n```\n\n```text\nnot code\n```\n"
            "## Two\n\n```python\nx = 1\n```\n\n<!-- readme-test: skip output -->\n```sh\n$ out\n```\n")
    one, two = parse(text)
    assert [(b.language, b.marker, b.line) for b in one.blocks] == [("bash", "background", 6)]
    assert [(b.section, b.language, b.marker) for b in two.blocks] == [("Two", "python", ""), ("Two", "bash", "skip output")]
    with pytest.raises(AssertionError, match="must sit right above"):
        parse("<!-- readme-test: skip output -->\n\n```bash\nls\n```\n")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Clone:
    path: Path
    env: dict[str, str]
    gateway: str
    monitor: str

    def localise(self, code: str) -> str:
        return code.replace(DEFAULT_GATEWAY, self.gateway).replace(DEFAULT_MONITOR, self.monitor)


def _make_clone(tmp: Path) -> Path:
    clone = tmp / "clone"
    clone.mkdir()
    for entry in ROOT.iterdir():
        if entry.name in (".nexus", ".git", ".pytest_cache", "test-artifacts") or entry.name.startswith(".nexus"):
            continue
        (clone / entry.name).symlink_to(entry)
    return clone


def _wait_for_gateway(clone: Path, proc: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + UP_TIMEOUT
    runtime = clone / ".nexus" / "runtime.json"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the background block exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            url = json.loads(runtime.read_text()).get("gateway")
            if url and httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return str(url)
        except (OSError, ValueError, httpx.HTTPError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"no gateway answered within {UP_TIMEOUT:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clone]:
    """The fresh clone, with every background block running (stopped by PID, with Ctrl-C, at the end)."""
    from nexus_kernel.scheduler import ensure_kernelspec

    ensure_kernelspec()
    tmp = tmp_path_factory.mktemp("readme")
    path = _make_clone(tmp)
    port, monitor_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}  # the reader's plain shell
    env.update(NEXUS_PORT=str(port), NEXUS_MONITOR_PORT=str(monitor_port), PYTHONUNBUFFERED="1")
    running: list[tuple[Block, subprocess.Popen[bytes]]] = []
    try:
        for block in (b for s in SECTIONS for b in s.blocks if b.marker == "background"):
            assert block.language == "bash", f"{block.where}: only a bash block can run in the background"
            log = tmp / f"background-{block.line}.log"
            proc = subprocess.Popen(["bash", "-e", "-o", "pipefail", "-c", block.code], cwd=path, env=env,
                                    stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
            running.append((block, proc))
            _wait_for_gateway(path, proc, log)
            SUMMARY["background"].append(block.where)
        yield Clone(path, env, f"127.0.0.1:{port}", f"127.0.0.1:{monitor_port}")
    finally:
        for block, proc in reversed(running):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as the README says
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
                    raise AssertionError(f"{block.where}: did not stop within 60 s of Ctrl-C") from None
        print(f"\nREADME blocks: {len(SUMMARY['run'])} run, {len(SUMMARY['background'])} in the background, "
              f"{len(SUMMARY['skipped'])} skipped" + "".join(f"\n  skipped {s}" for s in SUMMARY["skipped"]))


def _run_bash(clone: Clone, block: Block) -> None:
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", clone.localise(block.code)], cwd=clone.path,
                          env=clone.env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT)
    assert proc.returncode == 0, (f"{block.where}: exit {proc.returncode}\n--- block\n{block.code}--- stdout\n"
                                  f"{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")


class Kernel:
    """One Jupyter kernel (``nexus`` kernelspec) running a section's python blocks as notebook cells."""

    def __init__(self, clone: Clone) -> None:
        from jupyter_client.manager import start_new_kernel

        self.manager, self.client = start_new_kernel(kernel_name="nexus", cwd=str(clone.path), env=clone.env,
                                                     startup_timeout=120)

    def run(self, block: Block, code: str) -> None:
        outputs: list[str] = []

        def keep(message: dict) -> None:
            content = message.get("content", {})
            if message.get("msg_type") == "stream":
                outputs.append(content.get("text", ""))
            elif message.get("msg_type") == "error":
                outputs.append("\n".join(content.get("traceback", [])))

        reply = self.client.execute_interactive(code, timeout=BLOCK_TIMEOUT, output_hook=keep)
        content = reply["content"]
        if content["status"] != "ok":
            text = re.sub(r"\x1b\[[0-9;]*m", "", "".join(outputs))
            raise AssertionError(f"{block.where}: {content.get('ename')}: {content.get('evalue')}\n--- block\n"
                                 f"{block.code}--- output\n{text[-4000:]}")

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("section", SECTIONS, ids=[s.title for s in SECTIONS])
def test_readme_section_runs_as_written(section: Section, clone: Clone) -> None:
    kernel: Kernel | None = None
    ran = skipped = 0
    try:
        for block in section.blocks:
            if block.marker == "background":
                continue  # started by the fixture, running now
            if block.marker:
                assert _SKIPS.match(block.marker), (f"{block.where}: unknown marker '{block.marker}' (allowed: "
                                                    "background, skip output, skip outside <service>)")
                SUMMARY["skipped"].append(f"{block.where}: {block.marker}")
                skipped += 1
                continue
            if block.language == "bash":
                _run_bash(clone, block)
            else:
                kernel = kernel or Kernel(clone)
                kernel.run(block, clone.localise(block.code))
            SUMMARY["run"].append(block.where)
            ran += 1
    finally:
        if kernel is not None:
            kernel.close()
    print(f"{section.title}: {ran} blocks run, {skipped} skipped")
    assert ran + skipped + sum(b.marker == "background" for b in section.blocks) == len(section.blocks)


def test_readme_has_runnable_blocks() -> None:
    """The README is checked at all: it has a background `make up` and blocks of both languages."""
    blocks = [b for s in SECTIONS for b in s.blocks]
    assert any(b.marker == "background" and "make up" in b.code for b in blocks)
    assert {"bash", "python"} <= {b.language for b in blocks}
