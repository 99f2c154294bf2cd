"""Value rules for what enters the store, checked once at the boundary with pydantic.

The limits are documented in docs/python-api.md ("Input rules"); change both together.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from typing import Annotated, Any

from carma.domain.errors import InvalidInput
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

TEXT_MAX_CHARS = 20_000
KEY_MAX_CHARS = 128
METADATA_MAX_BYTES = 16_384
METADATA_MAX_KEYS = 64
METADATA_LIST_MAX = 256
DIMENSION_MAX = 4_096
NAMESPACE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
METADATA_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$"
INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # what SQLite and every JSON reader keep exactly

_NAMESPACE = re.compile(NAMESPACE_PATTERN)
_METADATA_KEY = re.compile(METADATA_KEY_PATTERN)

Scalar = StrictBool | StrictInt | StrictFloat | StrictStr | None
MetadataValue = Scalar | list[Scalar]
Metadata = dict[str, Any]


def _utf8(value: str, what: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{what} is not valid Unicode (it holds a lone surrogate)") from None


def validate_embedding(value: object) -> bytes:
    """A vector a caller gives instead of text for the model: a list (or a 1-d array) of 1 to
    DIMENSION_MAX finite numbers, as little-endian float32 bytes. The store checks its
    dimension, and normalises it."""
    if (
        getattr(value, "ndim", None) == 1
        and getattr(getattr(value, "dtype", None), "kind", "") == "f"
    ):
        return _float_array(value)
    if hasattr(value, "tolist") and not isinstance(value, (bytes, str)):
        value = value.tolist()  # an array (numpy's, say): its values as Python numbers
    if not isinstance(value, (list, tuple)):
        raise InvalidInput(f"an embedding is a list of numbers, not {type(value).__name__}")
    if not 1 <= len(value) <= DIMENSION_MAX:
        raise InvalidInput(f"an embedding has 1 to {DIMENSION_MAX} values, not {len(value)}")
    # Checked with C loops over the whole list (a loop of isinstance and isfinite per value
    # was a quarter of a write's cost when vectors are given); a value of another kind is
    # then found one by one, to name it.
    if not set(map(type, value)) <= {float, int}:
        for number in value:
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                raise InvalidInput(
                    f"an embedding holds numbers only, not {type(number).__name__} ({number!r:.40})"
                )
    try:
        # (a NaN or an infinity anywhere makes the sum one: no sum of values within float32's
        # range can overflow a float64)
        usable = math.isfinite(sum(value)) and max(map(abs, value)) <= 3.4e38
    except OverflowError:  # an integer past a float64
        usable = False
    if not usable:
        raise InvalidInput("an embedding holds a NaN, an infinity or a number past float32")
    return struct.pack(f"<{len(value)}f", *value)


def _float_array(value: Any) -> bytes:
    """validate_embedding of a 1-d array of floats (numpy's, say), checked by its own C loops
    instead of as a list of Python floats (a fifth of a write's cost when vectors are given);
    the same rules, the same bytes."""
    if not 1 <= len(value) <= DIMENSION_MAX:
        raise InvalidInput(f"an embedding has 1 to {DIMENSION_MAX} values, not {len(value)}")
    wide = value.astype("<f8")  # (a sum of float32 values could overflow float32)
    if not (math.isfinite(float(wide.sum())) and float(abs(wide).max()) <= 3.4e38):
        raise InvalidInput("an embedding holds a NaN, an infinity or a number past float32")
    return bytes(value.astype("<f4").tobytes())


def validate_text(text: object) -> str:
    if not isinstance(text, str):
        raise InvalidInput(f"text must be a string, not {type(text).__name__}")
    if not text.strip():
        raise InvalidInput("text is empty")
    if len(text) > TEXT_MAX_CHARS:
        raise InvalidInput(f"text has {len(text)} characters; the limit is {TEXT_MAX_CHARS}")
    if "\x00" in text:
        raise InvalidInput("text holds a NUL character")
    _utf8(text, "text")
    return text


def validate_namespace(namespace: object) -> str:
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise InvalidInput(
            f"namespace {namespace!r} is invalid: 1-64 characters of letters, digits, '_', "
            "'.' or '-', starting with a letter or digit"
        )
    return namespace


def validate_key(key: object) -> str:
    if not isinstance(key, str):
        raise InvalidInput(f"id must be a string, not {type(key).__name__}")
    if not key or len(key) > KEY_MAX_CHARS:
        raise InvalidInput(f"id must have 1 to {KEY_MAX_CHARS} characters")
    _utf8(key, "id")
    if not key.isprintable() or key != key.strip():
        raise InvalidInput(f"id {key!r} holds control characters or leading/trailing white space")
    return key


def _check_scalar(key: str, value: Any) -> None:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise InvalidInput(f"metadata {key!r}: integer outside the 64-bit range")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"metadata {key!r}: {value} is not a finite number")
    elif isinstance(value, str):
        _utf8(value, f"metadata {key!r}")
        if "\x00" in value:
            raise InvalidInput(f"metadata {key!r}: holds a NUL character")


class _MetadataModel(BaseModel):
    model_config = ConfigDict(strict=True)
    value: dict[StrictStr, MetadataValue]


def validate_metadata(metadata: object) -> Metadata:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidInput(f"metadata must be a JSON object, not {type(metadata).__name__}")
    try:
        checked = _MetadataModel(value=metadata).value
    except ValidationError as exc:
        first = exc.errors()[0]
        where = first["loc"][1] if len(first["loc"]) > 1 else "?"
        raise InvalidInput(
            f"metadata {where!r}: values must be strings, numbers, booleans, null "
            "or flat lists of them"
        ) from None
    if len(checked) > METADATA_MAX_KEYS:
        raise InvalidInput(f"metadata has {len(checked)} keys; the limit is {METADATA_MAX_KEYS}")
    for key, value in checked.items():
        if not _METADATA_KEY.fullmatch(key):
            raise InvalidInput(
                f"metadata key {key!r} is invalid: 1-64 characters of letters, digits, "
                "'_', '.', ':' or '-', starting with a letter or '_'"
            )
        if isinstance(value, list):
            if len(value) > METADATA_LIST_MAX:
                raise InvalidInput(f"metadata {key!r}: list longer than {METADATA_LIST_MAX}")
            for item in value:
                _check_scalar(key, item)
        else:
            _check_scalar(key, value)
    size = len(json.dumps(checked, ensure_ascii=False).encode("utf-8"))
    if size > METADATA_MAX_BYTES:
        raise InvalidInput(f"metadata is {size} bytes as JSON; the limit is {METADATA_MAX_BYTES}")
    return dict(checked)


def content_hash(text: str) -> str:
    """sha256 of the text's UTF-8 bytes, hex: the identity of a fragment's body."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Draft(BaseModel):
    """A fragment as a caller offers it, before it is embedded and written."""

    model_config = ConfigDict(frozen=True)

    text: Annotated[str, Field()]
    metadata: Metadata = Field(default_factory=dict)
    namespace: str = "default"
    id: str | None = None
    embedding: bytes | None = None  # float32 bytes, when the caller gives the vector

    @field_validator("text", mode="plain")
    @classmethod
    def _text(cls, value: object) -> str:
        return validate_text(value)

    @field_validator("metadata", mode="plain")
    @classmethod
    def _metadata(cls, value: object) -> Metadata:
        return validate_metadata(value)

    @field_validator("namespace", mode="plain")
    @classmethod
    def _namespace(cls, value: object) -> str:
        return validate_namespace(value)

    @field_validator("id", mode="plain")
    @classmethod
    def _id(cls, value: object) -> str | None:
        return None if value is None else validate_key(value)

    @field_validator("embedding", mode="plain")
    @classmethod
    def _embedding(cls, value: object) -> bytes | None:
        return None if value is None else validate_embedding(value)

    @classmethod
    def of(
        cls,
        text: object,
        metadata: object = None,
        namespace: object = "default",
        id: object = None,
        embedding: object = None,
    ) -> Draft:
        """Build a draft or raise InvalidInput with one clear line."""
        try:
            return cls(
                text=text,
                metadata=metadata if metadata is not None else {},
                namespace=namespace,
                id=id,
                embedding=embedding,
            )
        except ValidationError as exc:
            raise InvalidInput(_first_message(exc)) from None

    @classmethod
    def from_mapping(cls, item: object) -> Draft:
        """A draft from an import line or an add_many item:
        {"text", "metadata"?, "namespace"?, "id"?, "embedding"?} (or a draft already)."""
        if isinstance(item, Draft):
            return item
        if isinstance(item, str):
            return cls.of(item)
        if not isinstance(item, dict):
            raise InvalidInput(f"an item must be a string or an object, not {type(item).__name__}")
        unknown = set(item) - {"text", "metadata", "namespace", "id", "embedding"}
        if unknown:
            raise InvalidInput(f"unknown field(s): {', '.join(sorted(map(str, unknown)))}")
        if "text" not in item:
            raise InvalidInput("missing field 'text'")
        return cls.of(
            item["text"],
            item.get("metadata"),
            item.get("namespace", "default"),
            item.get("id"),
            item.get("embedding"),
        )

    @property
    def content_hash(self) -> str:
        return content_hash(self.text)


def _first_message(exc: ValidationError) -> str:
    err = exc.errors()[0]
    message = str(err.get("msg", "invalid input"))
    # Our validators raise InvalidInput (a ValueError); pydantic prefixes "Value error, ".
    return message.removeprefix("Value error, ")
