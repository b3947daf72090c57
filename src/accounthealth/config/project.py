"""The project file `accounthealth.yaml`: where the data is and which health model to use."""

from __future__ import annotations

import typing as t

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Source(BaseModel):
    """One canonical table read from one or more files."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str | list[str] = Field(description="path or glob, relative to the project folder")
    format: t.Literal["csv", "parquet", "json"] | None = None
    columns: dict[str, str] = Field(
        default_factory=dict, description="canonical column name: the source's column name"
    )
    delimiter: str = ","

    @property
    def files(self) -> list[str]:
        return [self.file] if isinstance(self.file, str) else list(self.file)


class Store(BaseModel):
    """Where accounthealth keeps ingested data and its own tables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    duckdb: str = "accounthealth.duckdb"


class ProjectConfig(BaseModel):
    """The whole project file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "accounthealth"
    store: Store = Store()
    model: str | dict[str, t.Any] = "model.yaml"
    sources: dict[str, Source]

    @field_validator("store", mode="before")
    @classmethod
    def _store_path(cls, v: t.Any) -> t.Any:
        return {"duckdb": v} if isinstance(v, str) else v
