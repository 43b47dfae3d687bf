"""Flow parameters generated from the pydantic model that declares them (one declaration).

Prefect builds a deployment's run form from the flow function's signature and the ``Args:``
section of its docstring; :func:`parameters_from` writes both from the model's fields, so the
UI form, ``prefect deployment run --param`` and the ``eraflow`` command (which reads the same
model) always agree, and every field shows its description.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from pydantic import BaseModel

F = TypeVar("F", bound=Callable[..., Any])


def _default(model: type[BaseModel], name: str) -> Any:
    value = model.model_fields[name].get_default(call_default_factory=True)
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def parameters_from(
    model: type[BaseModel], *, extra: Iterable[tuple[inspect.Parameter, str]] = ()
) -> Callable[[F], F]:
    """Give ``fn(**params)`` the model's fields as keyword parameters, documented.

    ``extra`` parameters (not in the model), each with its description, come before the
    model's; the function's own docstring is the summary, and an ``Args:`` section is appended
    from the descriptions (Prefect shows them in the deployment's run form).
    """
    extra = list(extra)

    def decorate(fn: F) -> F:
        fields = model.model_fields
        parameters = [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=_default(model, name),
                annotation=field.annotation,
            )
            for name, field in fields.items()
        ]
        parameters = [p for p, _ in extra] + parameters
        returns = inspect.signature(fn).return_annotation
        fn.__signature__ = inspect.Signature(parameters, return_annotation=returns)  # type: ignore[attr-defined]
        fn.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": returns}
        described = [(p.name, text) for p, text in extra]
        described += [(name, field.description or "") for name, field in fields.items()]
        args = "\n".join(f"    {name}: {text}" for name, text in described)
        fn.__doc__ = f"{inspect.cleandoc(fn.__doc__ or '')}\n\nArgs:\n{args}\n"
        return fn

    return decorate
