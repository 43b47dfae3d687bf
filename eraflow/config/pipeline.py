"""A pipeline run's settings: one tree of sections, and the flat surface derived from it.

The tree (:class:`PipelineConfig`) is what code reads: ``config.eras.method``,
``config.store.path``; each task takes only its section. People and tools set the same
fields by their flat public names (``era_method``, ``store``): the ``eraflow run`` options,
the flow's parameters (so the Prefect UI's form) and prefect.yaml's parameters.
:data:`PipelineParameters` is that flat surface, generated from the tree (names, types,
defaults, descriptions, checks), so the two never drift.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator
from pydantic.fields import FieldInfo

from eraflow.common.errors import ConfigError, validation_message
from eraflow.config.sections import (
    EraOptions,
    FeatureOptions,
    GridOptions,
    OrchestrationOptions,
    SelectionOptions,
    SourceOptions,
    StoreOptions,
)
from eraflow.config.values import POSTGRES, SIMULATOR


class PipelineConfig(BaseModel):
    """Everything one pipeline run needs, in sections, validated before any work."""

    model_config = ConfigDict(extra="forbid")

    source: SourceOptions = Field(default_factory=SourceOptions)
    grid: GridOptions = Field(default_factory=GridOptions)
    store: StoreOptions = Field(default_factory=StoreOptions)
    eras: EraOptions = Field(default_factory=EraOptions)
    features: FeatureOptions = Field(default_factory=FeatureOptions)
    selection: SelectionOptions = Field(default_factory=SelectionOptions)
    orchestration: OrchestrationOptions = Field(default_factory=OrchestrationOptions)

    @model_validator(mode="after")
    def _consistent(self) -> PipelineConfig:
        """Checks across fields (each field's own check lives in its type)."""
        source = self.source
        if source.start is not None and source.end is not None and source.start >= source.end:
            raise ValueError(f"empty range: start {source.start} is not before end {source.end}")
        if source.name == POSTGRES:
            if source.block is None or source.postgres is None:
                raise ValueError(
                    "source 'postgres' needs source_block (a PostgresConnection "
                    "block name) and postgres_source (at least {'table': ...})"
                )
            from eraflow.stages.ingest.postgres_source import PostgresSourceConfig

            PostgresSourceConfig.parse(source.postgres)
        elif source.name != SIMULATOR and source.data_root is None:
            raise ValueError(f"source {source.name!r} needs data_root (the folder of its files)")
        for option, named in (("store_block", self.store.block), ("source_block", source.block)):
            if named is not None and (named.count("/") > 1 or not named.rpartition("/")[2]):
                raise ValueError(f"{option} {named!r} must read 'name' or 'block-type-slug/name'")
        if source.data_root is not None and not source.data_root.is_dir():
            raise ValueError(f"data_root {source.data_root} is not a folder")
        path = self.store.path
        blocking = next((p for p in (path, *path.parents) if p.exists()), None)
        if blocking is not None and not blocking.is_dir():
            raise ValueError(
                f"store {path}: {blocking} is a file, not a folder; give --store a "
                "folder (it is created when missing)"
            )
        return self

    @classmethod
    def build(cls, **flat: Any) -> PipelineConfig:
        """The tree from flat public names (``era_method=...``).

        A ConfigError names the flat field of any problem, as the user wrote it.
        """
        unknown = sorted(set(flat) - set(FLAT))
        if unknown:
            raise ConfigError(
                f"invalid pipeline parameters: unknown {', '.join(unknown)} (see eraflow run "
                "--help for the names)"
            )
        nested: dict[str, dict[str, Any]] = {}
        for name, value in flat.items():
            section, field = FLAT[name]
            nested.setdefault(section, {})[field] = value
        try:
            return cls.model_validate(nested)
        except ValidationError as exc:
            raise ConfigError(
                f"invalid pipeline parameters: {validation_message(exc, rename=_flat_location)}"
            ) from None

    def flat(self) -> dict[str, Any]:
        """The settings by flat public name, as JSON values (what a child run receives)."""
        out: dict[str, Any] = {}
        for section_name in type(self).model_fields:
            section = getattr(self, section_name)
            out |= section.model_dump(mode="json", by_alias=True)
        return out

    def replace(self, **flat: Any) -> PipelineConfig:
        """A copy with some fields set by flat name, validated again."""
        return type(self).build(**(self.flat() | flat))


def _sections() -> Iterator[tuple[str, str, str, FieldInfo]]:
    """``(flat name, section, field, info)`` of every leaf field, in declaration order."""
    for section, info in PipelineConfig.model_fields.items():
        model = info.annotation
        assert isinstance(model, type)
        assert issubclass(model, BaseModel)
        for field, leaf in model.model_fields.items():
            yield leaf.alias or field, section, field, leaf


FLAT: dict[str, tuple[str, str]] = {}
for _flat, _section, _field, _ in _sections():
    if _flat in FLAT:
        raise RuntimeError(f"flat name {_flat!r} is declared twice (in {_section} too)")
    FLAT[_flat] = (_section, _field)


def _flat_location(location: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """``("eras", "levels", "level_c")`` -> ``("era_levels", "level_c")``: the user's names."""
    if len(location) >= 2 and location[0] in PipelineConfig.model_fields:
        section = PipelineConfig.model_fields[str(location[0])].annotation
        assert isinstance(section, type)
        assert issubclass(section, BaseModel)
        leaf = section.model_fields.get(str(location[1]))
        if leaf is not None:
            return (leaf.alias or str(location[1]), *location[2:])
    return location


def _flat_model() -> type[BaseModel]:
    """The flat surface: the command's options and the flow's parameters.

    Every leaf field under its public name, with its type, default, description and checks.
    """
    fields: dict[str, Any] = {}
    for flat, _, _, leaf in _sections():
        copy = FieldInfo.merge_field_infos(leaf, alias=None, validation_alias=None)
        fields[flat] = (leaf.annotation, copy)
    return create_model(
        "PipelineParameters",
        __config__=ConfigDict(extra="forbid"),
        __doc__=PipelineConfig.__doc__,
        **fields,
    )


PipelineParameters = _flat_model()
"""The flat public names of :class:`PipelineConfig` as one model (options and parameters)."""
