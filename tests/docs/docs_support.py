"""Run the code blocks of README.md and docs/**/*.md: parsing, prerequisites, resources.

Sybil parses the Markdown; this module decides how each block runs:

* ``python`` blocks (and ``<!-- invisible-code-block: python -->`` comments) run in one
  namespace per page, in page order, top-level ``await`` allowed (one event loop per
  page), in a scratch working directory of the page's own.
* ``console`` blocks: each ``$ upvest-verify ...`` line runs in-process through click's
  ``CliRunner`` and must exit 0; a line ending in ``&`` (a server left running) or a
  command that runs until Ctrl-C is only parsed, so a misspelt option still fails.
  Other commands (``pip``, ``tox``) are not run.
* A block whose imports need an extra that is not installed is skipped with the missing
  packages as the reason (the core-only environment); so is a block that uses a name
  only a skipped block defines.

Resources a page uses are provided by name, started on first use and stopped after the
page: ``sandbox`` (a running emulator on loopback), ``redis_url`` (a redis-server of its
own), ``receiver_url`` (a receiver on loopback that verifies with the page's ``sandbox``
keys, like the receivers of the getting-started pages).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import importlib.util
import inspect
import json
import os
import re
import shlex
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sybil import Document, Example, Region
from sybil.parsers.markdown.codeblock import CodeBlockParser

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

LANGUAGES_RUN = ("python", "console")
"""Fence languages whose blocks run (``console``: the ``upvest-verify`` lines)."""

LANGUAGES_SHOWN = ("bash", "toml", "text", "json", "ini", "nginx", "http", "yaml")
"""Fence languages shown, never run: configuration files, HTTP messages, output."""

BOUND = 15.0
"""Seconds any wait here may last; a bound, never a speed assertion."""


def documents() -> list[Path]:
    """README.md, CHANGELOG.md and every Markdown page under docs/, in a stable order."""
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted(DOCS.rglob("*.md"))]


# --------------------------------------------------------------------------- parsing


class FirstWordCodeBlockParser(CodeBlockParser):
    """A fenced-block parser matching the first word of the info string.

    ``python title="app.py"`` is a Python block too (Sybil compares the whole info
    string), so no titled block is silently left out.
    """

    def __call__(self, document: Document) -> Iterator[Region]:
        """Yield the regions of this parser's language."""
        for region in self.lexers(document):
            info = str(region.lexemes["arguments"]).split()
            if info and info[0] == self.language:
                region.parsed = region.lexemes["source"]
                region.evaluator = self._evaluator or self.evaluate
                yield region


@dataclass
class Stats:
    """How many blocks ran, were checked or skipped, over the whole session."""

    python: int = 0
    console_lines_run: int = 0
    console_lines_parsed: int = 0
    skipped: list[str] = field(default_factory=list)
    failed: int = 0


STATS = Stats()


def parse(path: Path) -> Document:
    """Parse one page into its python and console examples."""
    return Document.parse(
        str(path),
        FirstWordCodeBlockParser("python", evaluate_python),
        FirstWordCodeBlockParser("console", evaluate_console),
    )


def label(example: Example) -> str:
    """``docs/page.md:42``: the example's page and line."""
    return f"{Path(example.path).relative_to(ROOT)}:{example.line}"


# --------------------------------------------------------------------------- prerequisites

EXTRA_OF_MODULE: dict[str, tuple[str, tuple[str, ...]]] = {
    "upvest_verify.adapters.starlette": ("starlette", ("starlette", "anyio")),
    "upvest_verify.adapters.fastapi": ("fastapi", ("fastapi", "starlette", "anyio")),
    "upvest_verify.adapters.flask": ("flask", ("flask",)),
    "upvest_verify.adapters.django": ("django", ("django", "asgiref")),
    "upvest_verify.client": ("client", ("httpx",)),
    "upvest_verify.sandbox": ("sandbox", ("starlette", "uvicorn", "httpx")),
    "upvest_verify.cli": ("cli", ("click", "rich")),
}
"""Package modules that need an extra: the extra and the modules it installs."""

EXTRA_OF_THIRD_PARTY: dict[str, str] = {
    "starlette": "starlette",
    "anyio": "starlette",
    "fastapi": "fastapi",
    "flask": "flask",
    "django": "django",
    "httpx": "client",
    "redis": "redis",
    "click": "cli",
    "uvicorn": "sandbox",
    "opentelemetry": "otel",
}
"""Third-party modules a page imports directly, and the extra that installs each."""

PROVIDED: dict[str, tuple[str, tuple[str, ...]]] = {
    "sandbox": ("sandbox", ("starlette", "uvicorn", "httpx")),
    "receiver_url": ("sandbox", ("starlette", "uvicorn", "httpx")),
    "redis_url": ("redis", ("redis",)),
}
"""Names a page may use without defining them: the resource's extra and its modules."""


def _missing(modules: tuple[str, ...]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def _imports(tree: ast.AST) -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def missing_requirements(tree: ast.AST, namespace: dict[str, Any]) -> str | None:
    """Why a block cannot run here (a missing extra or third-party module), else ``None``."""
    wanted: dict[str, tuple[str, ...]] = {}  # what needs it -> the modules it needs

    for module, names in _imports(tree):
        if module == "upvest_verify.ledger" and any(n.startswith("Redis") for n in names):
            wanted["the [redis] extra"] = ("redis",)
        for prefix, (extra, modules) in EXTRA_OF_MODULE.items():
            if module == prefix or module.startswith(prefix + "."):
                wanted[f"the [{extra}] extra"] = modules
        top = module.partition(".")[0]
        if top in EXTRA_OF_THIRD_PARTY:
            what = f"the [{EXTRA_OF_THIRD_PARTY[top]}] extra"
            wanted[what] = tuple(dict.fromkeys((*wanted.get(what, ()), top)))
        elif top != "upvest_verify":
            wanted.setdefault(f"the module {top!r}", (top,))
    for name in sorted(loaded_names(tree) & set(PROVIDED)):
        if name not in namespace:
            extra, modules = PROVIDED[name]
            wanted[f"the [{extra}] extra (for {name!r})"] = modules
    problems: list[str] = []
    reported: set[str] = set()
    # Extras first, so that a module an extra brings is not reported twice.
    for what, modules in sorted(wanted.items(), key=lambda item: item[0].startswith("the module")):
        absent = [m for m in _missing(modules) if m not in reported]
        if absent:
            reported.update(absent)
            problems.append(
                what if what.startswith("the module") else f"{what}: no {', '.join(absent)}"
            )
    if "redis_url" in loaded_names(tree) and shutil.which("redis-server") is None:
        problems.append("the redis-server binary")
    return "needs " + "; ".join(problems) if problems else None


def loaded_names(tree: ast.AST) -> set[str]:
    """Names a block reads."""
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def bound_names(tree: ast.AST) -> set[str]:
    """Names a block binds (assignments, definitions, imports, ``as`` targets)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).partition(".")[0] for a in node.names)
    return names


# --------------------------------------------------------------------------- resources


class Receiver:
    """A webhook receiver on loopback that verifies deliveries with the emulator's keys.

    Answers 200 to a verified delivery and the reason code with its status otherwise,
    like the adapters; keeps what it verified in :attr:`received`.
    """

    def __init__(self, sandbox: Any) -> None:
        from upvest_verify import VerificationError, Verifier
        from upvest_verify.jwks import JWKSCache, URLKeySource

        verifier = Verifier(JWKSCache(URLKeySource(sandbox.jwks_url, allow_insecure_loopback=True)))
        self.received: list[Any] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    webhook = verifier.verify("POST", self.path, list(self.headers.items()), body)
                except VerificationError as e:
                    status, answer = e.status_code, e.reason.value.encode()
                else:
                    received.append(webhook)
                    status, answer = 200, b"ok"
                self.send_response(status)
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://localhost:{self._server.server_address[1]}/webhooks/upvest"

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(BOUND)


class PageRun:
    """One page's run: its namespace, event loop, scratch directory and resources."""

    def __init__(self, document: Document, workdir: Path) -> None:
        self.document = document
        self.workdir = workdir
        # Run as a script would: functions defined on the page belong to "__main__".
        document.namespace.setdefault("__name__", "__main__")
        self.next = 0  # index of the next example to evaluate
        self.poisoned: dict[str, str] = {}  # name -> label of the skipped block binding it
        self.failed: set[int] = set()
        self._stack = contextlib.ExitStack()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._resources: dict[str, Callable[[], Any]] = {
            "sandbox": self._sandbox,
            "redis_url": self._redis_url,
            "receiver_url": self._receiver_url,
        }

    # -- resources, started on first use ------------------------------------------------

    def provide(self, names: set[str]) -> None:
        """Put the resources among ``names`` that the page has not defined into its namespace."""
        namespace = self.document.namespace
        for name in sorted(names & set(self._resources)):
            if name not in namespace:
                namespace[name] = self._resources[name]()

    def _sandbox(self) -> Any:
        from upvest_verify.sandbox import Sandbox

        return self._stack.enter_context(Sandbox(port=0, time_scale=0.01, allow_http=True))

    def _redis_url(self) -> str:
        from redis_support import run_redis_server

        return str(self._stack.enter_context(run_redis_server()))

    def _receiver_url(self) -> str:
        namespace = self.document.namespace
        if "sandbox" not in namespace:
            namespace["sandbox"] = self._sandbox()
        receiver = Receiver(namespace["sandbox"])
        self._stack.callback(receiver.close)
        namespace["received"] = receiver.received
        return receiver.url

    # -- running ----------------------------------------------------------------------

    def run_coroutine(self, coroutine: Any) -> Any:
        """Run a block's top-level ``await``s on the page's event loop."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coroutine)

    def close(self) -> None:
        """Stop the page's resources and its event loop."""
        try:
            if self._loop is not None:
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        finally:
            try:
                self._stack.close()
            finally:
                if self._loop is not None:
                    self._loop.close()


CURRENT: dict[str, PageRun] = {}
"""The page being run, by path (at most one at a time)."""

SCRATCH: list[Path] = []
"""The folder holding each page's scratch directory (set by the test module's fixture)."""


def page_run(example: Example) -> PageRun:
    """The run of the example's page; whatever page ran before is closed first."""
    path = example.path
    run = CURRENT.get(path)
    if run is None:
        close_pages()
        relative = Path(path).relative_to(ROOT).with_suffix("")
        workdir = SCRATCH[-1] / "-".join(relative.parts)
        workdir.mkdir(parents=True, exist_ok=True)
        run = CURRENT[path] = PageRun(example.document, workdir)
    return run


def run_example(example: Example, page: list[Example]) -> None:
    """Run one block of ``page``, after any earlier block this session has not run yet.

    Running a single block (``-k``) thus runs the blocks above it first, as a reader
    would; a skipped earlier block is passed over, a failing one fails this one.
    """
    __tracebackhide__ = True
    run = page_run(example)
    index = page.index(example)
    if run.next > index:  # run again (e.g. a rerun plugin): start the page afresh
        close_pages()
        example.namespace.clear()
        run = page_run(example)
    while run.next < index:
        earlier = page[run.next]
        run.next += 1
        try:
            earlier.evaluate()
        except pytest.skip.Exception:
            continue
        except Exception as e:
            raise AssertionError(f"the block above, at {label(earlier)}, failed") from e
    run.next = index + 1
    try:
        example.evaluate()
    except pytest.skip.Exception as e:
        STATS.skipped.append(f"{label(example)}: {e.msg}")
        raise
    except BaseException:
        STATS.failed += 1
        raise


def close_pages() -> None:
    """Close every page run (after the last block, or before another page starts)."""
    while CURRENT:
        _, run = CURRENT.popitem()
        run.close()


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """Run inside ``path`` (files a page writes stay in its scratch directory)."""
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


# --------------------------------------------------------------------------- evaluators


def _prepare(example: Example, tree: ast.AST) -> PageRun:
    """Skip when a prerequisite is missing; provide the resources the block uses."""
    run = page_run(example)
    reason = missing_requirements(tree, example.namespace)
    uses = loaded_names(tree)
    if reason is None:
        tainted = sorted(n for n in uses & set(run.poisoned) if n not in bound_names(tree))
        if tainted:
            reason = f"uses {tainted[0]!r} from the skipped block at {run.poisoned[tainted[0]]}"
    if reason is not None:
        for name in bound_names(tree):
            run.poisoned.setdefault(name, label(example))
        pytest.skip(reason)
    for name in bound_names(tree):
        run.poisoned.pop(name, None)
    run.provide(uses)
    return run


def evaluate_python(example: Example) -> None:
    """Run a Python block in its page's namespace (top-level ``await`` allowed)."""
    __tracebackhide__ = True
    source = "\n" * (example.line + example.parsed.line_offset) + str(example.parsed)
    tree = ast.parse(source, example.path)
    run = _prepare(example, tree)
    code = compile(
        source, example.path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )
    with working_directory(run.workdir):
        result = eval(code, example.namespace)  # noqa: S307 - our own documentation
        if inspect.CO_COROUTINE & code.co_flags:
            run.run_coroutine(result)
    STATS.python += 1


# --------------------------------------------------------------------------- console

LONG_RUNNING: dict[str, tuple[str, ...]] = {
    "sandbox": (),
    "listen": ("--count",),
    "work": ("--max-events", "--idle-timeout"),
}
"""Commands that serve until Ctrl-C, and the options that make them stop by themselves."""


@dataclass(frozen=True)
class CommandLine:
    """One ``upvest-verify`` command of a console block."""

    args: list[str]
    stdout_to: str | None  # "> file": where standard output goes
    background: bool  # ends in "&"


def expand(text: str, namespace: dict[str, Any]) -> str:
    """Expand ``$NAME`` from the page's upper-case ``str`` variables, else the environment."""
    variables = {
        **os.environ,
        **{k: v for k, v in namespace.items() if k.isupper() and isinstance(v, str)},
    }

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return variables[name] if name in variables else match.group(0)

    return re.sub(r"\$\{(\w+)\}|\$([A-Za-z_]\w*)", value, text)


def command_lines(text: str, namespace: dict[str, Any]) -> list[CommandLine]:
    """The ``upvest-verify`` commands of a console block (``$`` prompts, ``\\`` joins)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    found: list[CommandLine] = []
    for line in joined.splitlines():
        line = line.strip()
        if line.startswith("$ "):
            line = line[2:]
        for part in re.split(r"\s*&&\s*", line):
            if not part.startswith("upvest-verify"):
                continue
            background = part.rstrip().endswith("&")
            words = shlex.split(expand(part.rstrip().rstrip("&"), namespace), comments=True)[1:]
            stdout_to = None
            if ">" in words:
                at = words.index(">")
                stdout_to, words = words[at + 1], words[:at]
            found.append(CommandLine(words, stdout_to, background))
    return found


def check_options(args: list[str]) -> None:
    """Parse ``args`` as the command line would (options, types, files), without running."""
    import click

    from upvest_verify.cli import cli

    command: click.Command = cli
    context: click.Context | None = None
    rest = list(args)
    while isinstance(command, click.Group):  # our groups take no options of their own
        assert rest, f"{' '.join(args)!r} names no command"
        name, rest = rest[0], rest[1:]
        context = click.Context(command, info_name=command.name, parent=context)
        sub = command.get_command(context, name)
        assert sub is not None, f"no command {name!r} in {' '.join(args)!r}"
        command = sub
    with command.make_context(command.name, rest, parent=context):
        pass


def evaluate_console(example: Example) -> None:
    """Run (or, for servers, parse) each ``upvest-verify`` line of a console block."""
    __tracebackhide__ = True
    lines = command_lines(str(example.parsed), example.namespace)
    if not lines:
        return
    tree = ast.parse("import upvest_verify.cli")
    run = _prepare(example, tree)
    from click.testing import CliRunner

    from upvest_verify.cli import cli

    with working_directory(run.workdir):
        for line in lines:
            command = line.args[0] if line.args else ""
            stops = LONG_RUNNING.get(command)
            if line.background or (stops is not None and not set(stops) & set(line.args)):
                check_options(line.args)
                STATS.console_lines_parsed += 1
                continue
            result = CliRunner().invoke(cli, line.args, catch_exceptions=False)
            shown = " ".join(["upvest-verify", *line.args])
            assert result.exit_code == 0, f"{shown} exited {result.exit_code}:\n{result.output}"
            if line.stdout_to is not None:
                Path(line.stdout_to).write_text(result.stdout)
            STATS.console_lines_run += 1


def write_credentials(path: str, sandbox: Any) -> None:
    """Write the emulator tenant's credentials as ``sandbox --credentials-out`` does."""
    tenant = sandbox.tenant
    document = {
        "base_url": sandbox.base_url,
        "client_id": tenant.client_id,
        "client_secret": tenant.client_secret,
        "signing_key_id": tenant.key_id,
        "signing_key_pem": tenant.private_key_pem(),
    }
    Path(path).write_text(json.dumps(document))
