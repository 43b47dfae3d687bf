"""Command lines from pydantic models: options, help and one-line errors (cyclopts).

A command's options are the fields of the model that declares them (descriptions, defaults,
choices), so the help never drifts from the code. User mistakes end with exit status 2 and one
clear line on stderr, never a traceback: a bad option, an invalid value, or an eraflow error
raised before any work starts.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

from cyclopts import App, CycloptsError, Parameter
from pydantic import BaseModel, ValidationError
from rich.console import Console

from eraflow.common.errors import EraflowError, validation_message

M = TypeVar("M", bound=BaseModel)
USAGE = 2
"""Exit status of a user mistake (as argparse and cyclopts use it)."""


def error_line(exc: BaseException) -> str:
    """The one line a user sees for ``exc``."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ValidationError):
            return validation_message(cause)
        cause = cause.__cause__
    text = str(exc).strip()
    return " ".join(text.split()) if text else type(exc).__name__


def new_app(name: str, help_text: str) -> App:
    """An App whose errors are one line and whose commands' return values are exit codes."""

    def one_line(exc: CycloptsError) -> str:  # cyclopts' default is a boxed panel
        return f"{name}: {error_line(exc)}"

    return App(
        name=name,
        help=help_text,
        error_formatter=one_line,
        error_console=Console(stderr=True, soft_wrap=True),  # one line, whatever the width
        result_action="return_value",
        help_on_error=False,
        default_parameter=Parameter(consume_multiple=True),  # --entities a b
    )


def run_app(app: App, argv: Sequence[str] | None, prog: str) -> int:
    """Run ``app``; returns the exit status (0 ok, 2 user mistake, 1 other failure)."""
    try:
        result = app(list(argv) if argv is not None else sys.argv[1:], exit_on_error=False)
    except CycloptsError:
        return USAGE  # already printed, as one line, by the error formatter
    except (EraflowError, ValidationError) as exc:
        print(f"{prog}: {error_line(exc)}", file=sys.stderr)
        return USAGE
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else 0
    return int(result) if isinstance(result, int) else 0


def with_options(fn: Callable[..., Any], **models: type[BaseModel]) -> Callable[..., Any]:
    """``fn``'s keyword parameters named in ``models`` become those models' fields as options.

    Set here rather than written as annotations: the model is a variable, and postponed
    (string) annotations could not name it.
    """
    fn.__annotations__ = fn.__annotations__ | {
        name: Annotated[model | None, Parameter(name="*")] for name, model in models.items()
    }
    return fn


def run_command(
    prog: str, model: type[M], action: Callable[[M], Any], argv: Sequence[str] | None = None
) -> int:
    """A one-command program whose options are ``model``'s fields."""
    app = new_app(prog, model.__doc__ or "")

    def command(*, settings: Any = None) -> int:
        action(settings if settings is not None else model())
        return 0

    app.default(with_options(command, settings=model))
    return run_app(app, argv, prog)
