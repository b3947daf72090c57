"""Read `accounthealth.yaml` and the health model, turning every problem into a ConfigError
that names the file, line and YAML path, what is wrong and how to fix it."""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError

from accounthealth.config.model import HealthModel
from accounthealth.config.project import ProjectConfig, Source
from accounthealth.config.yamlfile import YamlDocument, load_yaml_file
from accounthealth.errors import ConfigError, did_you_mean
from accounthealth.sources.schema import TABLES

PROJECT_FILE = "accounthealth.yaml"

M = t.TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class LoadedModel:
    """A validated health model and the YAML it came from (for error locations)."""

    model: HealthModel
    document: YamlDocument
    prefix: tuple[str | int, ...] = ()

    def where(self, *path: str | int) -> str:
        return self.document.where((*self.prefix, *path))


def _allowed_fields(model: type[BaseModel], path: t.Sequence[str | int]) -> list[str]:
    """Field names valid at ``path`` inside ``model``, for 'did you mean' hints."""
    current: t.Any = model
    for part in path:
        if isinstance(part, int) or current is None:
            continue
        field = getattr(current, "model_fields", {}).get(str(part))
        if field is None:
            continue
        current = _model_in(field.annotation)
    return list(getattr(current, "model_fields", {}).keys()) if current else []


def _model_in(annotation: t.Any) -> t.Any:
    """The pydantic model inside an annotation like `dict[str, X] | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in reversed(t.get_args(annotation)):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def validate(
    model: type[M], data: t.Any, document: YamlDocument, prefix: tuple[str | int, ...] = ()
) -> M:
    """Validate ``data`` against ``model``; the first error becomes a located ConfigError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # In a union (a name or an inline metric), the deepest error is the one that explains.
        err = max(exc.errors(), key=lambda e: len(e["loc"]))
        loc = tuple(p for p in err["loc"] if not _is_union_tag(p))
        path = (*prefix, *loc)
        where = document.where(path)
        if err["type"] == "extra_forbidden":
            key = str(loc[-1])
            options = _allowed_fields(model, loc[:-1])
            raise ConfigError(
                f"unknown key '{key}'",
                where=where,
                fix=f"remove it or correct the spelling: {did_you_mean(key, options)}",
            ) from None
        if err["type"] == "missing":
            raise ConfigError(
                f"'{loc[-1]}' is required here",
                where=document.where(path[:-1]),
                fix=f"add '{loc[-1]}:' with a value",
            ) from None
        message = err["msg"].removeprefix("Value error, ")
        raise ConfigError(
            message,
            where=where,
            fix="see docs/model-reference.md for the accepted forms",
        ) from None


def _is_union_tag(part: t.Any) -> bool:
    # pydantic adds the union member's type name (e.g. 'MetricSpec', 'str') to error paths.
    return isinstance(part, str) and (
        part in {"str", "int", "float", "bool", "DefaultScore", "MetricSpec"}
        or part.startswith(("function-", "literal[", "tuple["))
    )


def _check_engine_supports(source: Source, engine: str, where: str) -> None:
    """Refuse, before any work, a source the configured compute engine cannot read."""
    if source.path is not None and engine == "postgres":
        raise ConfigError(
            "a path: source cannot be read by PostgreSQL",
            where=where,
            fix="load the files with file:, or point table:/query: at data in the server",
        )
    if source.format == "delta" and engine not in ("duckdb", "spark"):
        raise ConfigError(
            f"Delta tables are read by the duckdb and spark engines, not {engine}",
            where=where,
            fix="set compute: {engine: duckdb} or {engine: spark}, or export the table to Parquet",
        )


@dataclass(frozen=True)
class LoadedProject:
    """A validated project: its folder, config and health model."""

    folder: Path
    config: ProjectConfig
    document: YamlDocument
    health: LoadedModel

    @property
    def file(self) -> Path:
        return self.folder / PROJECT_FILE


def load_model_file(file: Path) -> LoadedModel:
    """Load and validate a standalone health model YAML file."""
    document = load_yaml_file(file)
    return LoadedModel(validate(HealthModel, document.data, document), document)


def load_project(folder: Path) -> LoadedProject:
    """Load `accounthealth.yaml` in ``folder`` and the model it names."""
    file = folder / PROJECT_FILE
    if not file.exists():
        raise ConfigError(
            f"no {PROJECT_FILE} in {folder}",
            where=str(folder),
            fix="run the command inside a project folder, pass --project, "
            "or create one with 'accounthealth init NAME --demo'",
        )
    document = load_yaml_file(file)
    config = validate(ProjectConfig, document.data, document)
    for name, source in config.sources.items():
        if name not in TABLES:
            raise ConfigError(
                f"unknown source table '{name}'",
                where=document.where(("sources", name)),
                fix=f"use a canonical table name: {did_you_mean(name, TABLES)}",
            )
        _check_engine_supports(source, config.engine, document.where(("sources", name)))
    if isinstance(config.model, str):
        health = load_model_file(folder / config.model)
    else:
        health = LoadedModel(
            validate(HealthModel, config.model, document, ("model",)), document, ("model",)
        )
    return LoadedProject(folder=folder, config=config, document=document, health=health)
