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
    path: str | None = Field(default=None, description="a Parquet or Delta location read in place")
    format: t.Literal["csv", "parquet", "json", "delta"] | None = None
    columns: dict[str, str] = Field(
        default_factory=dict, description="canonical column name: the source's column name"
    )
    delimiter: str = ","
    append_only: bool = Field(
        default=False,
        description="rows read in place are only ever added, never changed or deleted: the "
        "daily run on DuckDB then reads only the new days' rows",
    )

    @model_validator(mode="after")
    def _one_location(self) -> Source:
        given = [k for k in ("file", "table", "query", "path") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a source needs exactly one of file, table, query or path "
                f"(got {', '.join(given) or 'none'})"
            )
        if self.format == "delta" and self.path is None:
            raise ValueError("format: delta applies to a path: source")
        if self.append_only and self.file is not None:
            raise ValueError(
                "append_only applies to a table, query or path read in place; a file: source "
                "is ingested, and ingest appends new files by itself: remove append_only"
            )
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


class Smtp(BaseModel):
    """An SMTP server that sends email notifications."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str
    port: int = 25
    sender: str = Field(description="the From address")
    username: str | None = None
    password: str | None = Field(default=None, description="${VAR} is read from the environment")
    starttls: bool = False


class Webhook(BaseModel):
    """A URL that receives each notification as JSON, signed with HMAC-SHA256 when a secret is
    set (header X-AccountHealth-Signature)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    secret: str | None = Field(default=None, description="${VAR} is read from the environment")


class Channel(BaseModel):
    """One way to deliver notifications: email, a Slack incoming webhook, or a webhook."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    smtp: Smtp | None = None
    slack: str | None = Field(default=None, description="incoming webhook URL (or ${VAR})")
    webhook: Webhook | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Channel:
        given = [k for k in ("smtp", "slack", "webhook") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a channel is exactly one of smtp, slack or webhook "
                f"(got {', '.join(given) or 'none'})"
            )
        return self

    @property
    def kind(self) -> str:
        return "smtp" if self.smtp else "slack" if self.slack else "webhook"


class Person(BaseModel):
    """How to reach a CSM, a manager or a role (vp, executive, ...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    email: str | None = None
    slack: str | None = Field(default=None, description="how Slack messages mention them")
    name: str | None = None


class Notifications(BaseModel):
    """Channels, who is who, and delivery settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: dict[str, Channel] = Field(default_factory=dict)
    directory: dict[str, Person] = Field(
        default_factory=dict,
        description="a CSM or manager as written in accounts.owner/manager, or a role name",
    )
    timeout: float = Field(10.0, gt=0, le=300, description="seconds per delivery attempt")
    attempts: int = Field(6, ge=1, le=50, description="tries before a notification fails")
    backoff: float = Field(60.0, ge=0, description="seconds before the first retry; doubles")


class Schedule(BaseModel):
    """When `accounthealth run --schedule` runs the day's job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at: str = Field("06:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM local time")


class ProjectConfig(BaseModel):
    """The whole project file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "accounthealth"
    store: Store = Store()
    compute: Compute = Compute()
    model: str | dict[str, t.Any] = "model.yaml"
    sources: dict[str, Source]
    notifications: Notifications = Notifications()
    schedule: Schedule = Schedule()

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
