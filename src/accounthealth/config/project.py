"""The project file `accounthealth.yaml`: where the data is, which engine computes the scores,
where accounthealth keeps its own state, and which health model to use."""

from __future__ import annotations

import typing as t

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ENGINES = ("duckdb", "postgres", "spark", "ibis")


class Source(BaseModel):
    """One canonical table: files that ingest copies in, or a table, query or path that already
    lives in the compute engine and is read where it is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str | list[str] | None = Field(
        default=None, description="path or glob, relative to the project folder"
    )
    table: str | None = Field(default=None, description="a table in the compute engine")
    query: str | None = Field(default=None, description="a SELECT run by the compute engine")
    path: str | None = Field(
        default=None, description="a Parquet (or, on Spark, Delta) location read in place"
    )
    format: t.Literal["csv", "parquet", "json", "delta"] | None = None
    columns: dict[str, str] = Field(
        default_factory=dict, description="canonical column name: the source's column name"
    )
    delimiter: str = ","

    @model_validator(mode="after")
    def _one_location(self) -> Source:
        given = [k for k in ("file", "table", "query", "path") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a source needs exactly one of file, table, query or path "
                f"(got {', '.join(given) or 'none'})"
            )
        if self.format == "delta" and self.path is None:
            raise ValueError("format: delta applies to a path: source on Spark")
        return self

    @property
    def in_engine(self) -> bool:
        """True when the data already lives in the compute engine (nothing to copy)."""
        return self.file is None

    @property
    def files(self) -> list[str]:
        if self.file is None:
            return []
        return [self.file] if isinstance(self.file, str) else list(self.file)


class Store(BaseModel):
    """Where accounthealth keeps its own tables (scores, history, runs): a DuckDB file in the
    project folder, or a PostgreSQL database shared by a team."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    duckdb: str = "accounthealth.duckdb"
    postgres: str | None = Field(
        default=None, description="postgresql:// URL; ${VAR} is read from the environment"
    )
    db_schema: str | None = Field(default=None, alias="schema")

    @model_validator(mode="after")
    def _one_kind(self) -> Store:
        if "duckdb" in self.model_fields_set and self.postgres:
            raise ValueError("the store is either duckdb: FILE or postgres: URL, not both")
        return self

    @property
    def kind(self) -> str:
        return "postgres" if self.postgres else "duckdb"


class Compute(BaseModel):
    """The engine that evaluates the health model. By default the store's own database; a
    connection setting switches it, the model stays the same."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: t.Literal["duckdb", "postgres", "spark", "ibis"] | None = None
    path: str | None = Field(default=None, description="duckdb: the database file")
    url: str | None = Field(
        default=None,
        description="postgres: postgresql:// URL; ibis: any Ibis backend URL (snowflake://...)",
    )
    db_schema: str | None = Field(
        default=None,
        alias="schema",
        description="postgres: the schema ingested tables go to; spark: the database",
    )
    master: str | None = Field(default=None, description="spark: local[*], yarn, spark://...")
    conf: dict[str, str] = Field(
        default_factory=dict,
        description="spark: session settings; duckdb: database settings (memory_limit, threads)",
    )
    tables: str | None = Field(
        default=None, description="spark: where ingested tables are written as Parquet"
    )

    @field_validator("conf", mode="before")
    @classmethod
    def _conf_strings(cls, v: t.Any) -> t.Any:
        return {k: str(x) for k, x in v.items()} if isinstance(v, dict) else v


class ProjectConfig(BaseModel):
    """The whole project file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "accounthealth"
    store: Store = Store()
    compute: Compute = Compute()
    model: str | dict[str, t.Any] = "model.yaml"
    sources: dict[str, Source]

    @field_validator("store", mode="before")
    @classmethod
    def _store_path(cls, v: t.Any) -> t.Any:
        return {"duckdb": v} if isinstance(v, str) else v

    @field_validator("compute", mode="before")
    @classmethod
    def _compute_name(cls, v: t.Any) -> t.Any:
        return {"engine": v} if isinstance(v, str) else v

    @property
    def engine(self) -> str:
        """The compute engine's kind (the store's when not set)."""
        return self.compute.engine or self.store.kind
