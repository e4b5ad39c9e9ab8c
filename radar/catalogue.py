"""Listing catalogues for impact estimates: CSV, JSON lines, Parquet or a SQL table, read in chunks.

Columns (names matched case-insensitively; map other names with ``columns={"title": "product_name"}``):

=============  ========  ==========================================================================
column         needed    meaning
=============  ========  ==========================================================================
id             required  the platform's listing id (any type; read as text)
title          required  listing title; rows with an empty title are skipped and counted
market         required  ISO 3166 alpha-2 market code (DE, FR, GB…; UK is read as GB); may be
                         replaced by ``default_market=`` for a one-market catalogue
description    optional  listing description, matched together with the title
category       optional  taxonomy id (``cat.toys.magnetic``) or the catalogue's own category label;
                         only taxonomy ids narrow a rule's scope, any value is reported as-is
brand          optional  brand name, reported with example hits
seller         optional  seller id or name, used for the top-sellers figure
=============  ========  ==========================================================================

Formats, chosen by file suffix (``.gz`` allowed for the text formats) or ``format=``:

- ``.csv`` / ``.tsv`` / ``.txt``: a header row; the delimiter is the one of ``, ; TAB |`` that occurs
  most often in the header (European spreadsheet exports use ``;``). pyarrow's multi-threaded reader
  reads it, every column as text; from a row it cannot take (another width than the header, bytes that
  are not UTF-8) the csv module reads on, padding short rows; UTF-16 files are read by the csv module.
- ``.jsonl`` / ``.ndjson`` / ``.json``: one JSON object per line (a ``.json`` file holding one array is
  read whole).
- ``.parquet`` / ``.pq``: read by pyarrow in record batches, only the needed columns.
- a SQLAlchemy URL (``sqlite:///listings.db``, ``postgresql+psycopg://…``) with ``table=``.

Text files are decoded as UTF-8; a line that is not valid UTF-8 is decoded byte-wise as cp1252 (latin-1
for the five bytes cp1252 leaves undefined) and counted, with one warning per file naming it. Rows
arrive in :class:`ListingChunk` column lists of ``chunk_size`` rows, so a 10-million-row catalogue
never holds more than one chunk (and one pyarrow batch) in memory; iterating a :class:`Catalogue` again
reads it again.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from itertools import chain, compress, islice
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any

import numpy as np

from radar.errors import RadarError
from radar.matcher import normalise_market

log = logging.getLogger(__name__)

REQUIRED = ("id", "title", "market")
# Columns whose values repeat from row to row: pyarrow readers dictionary-encode them (see _pylist).
_REPEATED = ("market", "category", "brand", "seller")
OPTIONAL = ("description", "category", "brand", "seller")
COLUMNS = REQUIRED + OPTIONAL
DEFAULT_CHUNK = 10_000
_BLOCK = 1 << 20
_ARROW_BLOCK = 1 << 22  # bytes of CSV per pyarrow batch

# Descriptions scraped from product pages can exceed csv's default 128 KiB field limit.
csv.field_size_limit(1 << 26)


_CP1252_UNDEFINED = frozenset((0x81, 0x8D, 0x8F, 0x90, 0x9D))


def _legacy_handler(exc: UnicodeError) -> tuple[str, int]:
    # Invalid UTF-8 bytes are read as cp1252, the usual encoding of Windows spreadsheet exports.
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    text = "".join(chr(b) if b in _CP1252_UNDEFINED else bytes((b,)).decode("cp1252") for b in bad)
    return text, exc.end


codecs.register_error("radar_cp1252_fallback", _legacy_handler)


@dataclass(slots=True)
class Listing:
    """One listing of a catalogue."""

    id: str
    title: str
    market: str
    description: str | None = None
    category: str | None = None
    brand: str | None = None
    seller: str | None = None


@dataclass(slots=True)
class ListingChunk:
    """Up to ``chunk_size`` listings as parallel column lists; optional columns are None when absent (or empty in every row)."""

    id: list[str]
    title: list[str]
    market: list[str]
    description: list[str | None] | None = None
    category: list[str | None] | None = None
    brand: list[str | None] | None = None
    seller: list[str | None] | None = None

    def __len__(self) -> int:
        return len(self.title)

    def listing(self, row: int) -> Listing:
        """Row ``row`` as a :class:`Listing`."""
        values = {name: (col[row] if (col := getattr(self, name)) is not None else None) for name in COLUMNS}
        return Listing(**values)

    def listings(self) -> Iterator[Listing]:
        """Every row as a :class:`Listing` (convenient, not fast)."""
        return (self.listing(i) for i in range(len(self)))


@dataclass
class CatalogueStats:
    """What one pass over a catalogue saw."""

    rows_read: int = 0
    listings: int = 0
    empty_titles: int = 0
    missing_market: int = 0
    bad_records: int = 0
    fallback_decoded_lines: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class _MarketCodes(dict):
    """Memo of raw market value → normalised code; catalogues repeat a handful of values."""

    def __missing__(self, key: Any) -> str:
        value = self[key] = normalise_market(key)  # None reads as ""
        return value


def _texts(values: list[Any]) -> list[str | None]:
    """Values as stripped text, None for empty or missing."""
    if isinstance(values, _Cleaned):
        return values
    try:
        # str.strip and the membership tests run in C; only a column with empty values takes a Python pass.
        texts = list(map(str.strip, values))
        return [v or None for v in texts] if "" in texts else texts
    except TypeError:
        pass
    try:
        distinct = set(values)
    except TypeError:  # unhashable values (JSON lists)
        return [_text(v) for v in values]
    if len(distinct) * 4 <= len(values) and all(v is None or type(v) is str for v in distinct):
        # Text with gaps whose values repeat (categories, brands): clean each distinct value once. Only for
        # text: numbers that compare equal (1, 1.0, True) would share one cleaned value.
        cleaned = {v: _text(v) for v in distinct}
        return list(map(cleaned.__getitem__, values))
    try:  # text with gaps (None), the usual optional column
        return [(v.strip() or None) if v is not None else None for v in values]
    except AttributeError:  # numbers and other types
        return [_text(v) for v in values]


def _optional_texts(values: list[Any]) -> list[str | None] | None:
    """An optional column as :func:`_texts`, or None when no row has a value (as if the column were absent)."""
    if values.count(None) == len(values):
        return None
    texts = _texts(values)
    return None if texts.count(None) == len(texts) else texts


def _ids(values: list[Any]) -> list[str]:
    try:
        return list(map(str.strip, values))
    except TypeError:
        return ["" if v is None else str(v).strip() for v in values]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    text = text.strip()
    return text or None


class Catalogue:
    """A listing catalogue that can be read, in chunks, as many times as needed."""

    def __init__(
        self,
        source: str | Path,
        *,
        table: str | None = None,
        format: str | None = None,
        columns: Mapping[str, str] | None = None,
        default_market: str | None = None,
        chunk_size: int = DEFAULT_CHUNK,
        delimiter: str | None = None,
    ) -> None:
        self.source = source
        self.table = table
        self.columns = {k: v for k, v in (columns or {}).items()}
        unknown = set(self.columns) - set(COLUMNS)
        if unknown:
            raise RadarError(f"columns= maps unknown catalogue fields {sorted(unknown)}; known: {', '.join(COLUMNS)}")
        self.default_market = normalise_market(default_market) if default_market else None
        self.chunk_size = max(1, int(chunk_size))
        self.delimiter = delimiter
        self.format = format or self._guess_format()
        self.stats = CatalogueStats()
        self._records: Sequence[Any] | None = None
        self._warned = False

    # construction -----------------------------------------------------------------------------------

    @classmethod
    def from_records(
        cls, records: Iterable[Listing | Mapping[str, Any]], *, name: str = "<records>", chunk_size: int = DEFAULT_CHUNK
    ) -> Catalogue:
        """A catalogue over in-memory listings (Listing objects or mappings with the same keys)."""
        self = cls.__new__(cls)
        self.source = name
        self.table = None
        self.columns = {}
        self.default_market = None
        self.chunk_size = max(1, int(chunk_size))
        self.delimiter = None
        self.format = "records"
        self.stats = CatalogueStats()
        self._records = records if isinstance(records, Sequence) else list(records)
        self._warned = False
        return self

    def _guess_format(self) -> str:
        text = str(self.source)
        if "://" in text:
            if not self.table:
                raise RadarError(f"{text}: a SQL catalogue needs table= naming the listings table")
            return "sql"
        name = Path(text).name.lower().removesuffix(".gz")
        for suffixes, fmt in (((".csv", ".tsv", ".txt"), "csv"), ((".jsonl", ".ndjson", ".json"), "jsonl"), ((".parquet", ".pq"), "parquet")):
            if name.endswith(suffixes):
                return fmt
        raise RadarError(f"{text}: cannot tell the catalogue format from the name; use .csv, .jsonl, .parquet or pass format=")

    @property
    def name(self) -> str:
        """How messages name this catalogue."""
        return f"{self.source} (table {self.table})" if self.format == "sql" else str(self.source)

    def __repr__(self) -> str:
        return f"Catalogue({self.name!r}, format={self.format!r})"

    # reading ---------------------------------------------------------------------------------------

    def count(self) -> int | None:
        """Rows in the catalogue when that is cheap to know (Parquet metadata, SQL COUNT, records), else None.

        The count includes rows a read would skip (empty title, no market).
        """
        if self.format == "records":
            return len(self._records or ())
        if self.format == "parquet":
            return self._parquet_file().metadata.num_rows
        if self.format == "sql":
            from sqlalchemy import func, select
            from sqlalchemy.exc import SQLAlchemyError

            engine = self._sql_engine()
            try:
                table = self._sql_table(engine)
                with engine.connect() as connection:
                    return int(connection.execute(select(func.count()).select_from(table)).scalar_one())
            except SQLAlchemyError as exc:
                raise RadarError(f"{self.name}: counting the table failed ({exc.__class__.__name__}: {exc})") from None
            finally:
                engine.dispose()
        return None

    def __iter__(self) -> Iterator[Listing]:
        for chunk in self.chunks():
            yield from chunk.listings()

    def chunks(self, fields: Iterable[str] | None = None) -> Iterator[ListingChunk]:
        """Read the catalogue once, ``chunk_size`` listings at a time.

        ``fields`` limits the optional columns read (``("category",)`` for a counting pass); the required
        ones are always read. Stats of the pass are in :attr:`stats` once the iterator is exhausted.
        """
        wanted = set(OPTIONAL if fields is None else fields) & set(OPTIONAL)
        self.stats = stats = CatalogueStats()
        readers = {"csv": self._read_csv, "jsonl": self._read_jsonl, "parquet": self._read_parquet, "sql": self._read_sql, "records": self._read_records}
        markets = _MarketCodes()
        for raw in readers[self.format](wanted, stats):
            chunk = self._clean(raw, wanted, stats, markets)
            if len(chunk):
                yield chunk
        self._report(stats)

    def _report(self, stats: CatalogueStats) -> None:
        if self._warned:
            return
        self._warned = True
        if stats.fallback_decoded_lines:
            log.warning(
                "%s: %d line(s) were not valid UTF-8 and were decoded as cp1252/latin-1; re-export the file as UTF-8 "
                "if accented characters look wrong",
                self.name, stats.fallback_decoded_lines,
            )
        if stats.bad_records:
            log.warning("%s: %d record(s) could not be parsed and were skipped", self.name, stats.bad_records)
        if stats.empty_titles or stats.missing_market:
            log.info(
                "%s: skipped %d listing(s) with an empty title and %d without a market",
                self.name, stats.empty_titles, stats.missing_market,
            )

    def _clean(self, raw: dict[str, list[Any]], wanted: set[str], stats: CatalogueStats, markets: _MarketCodes) -> ListingChunk:
        titles = _texts(raw["title"])
        n = len(titles)
        stats.rows_read += n
        if "market" in raw:
            market_values = raw["market"] if isinstance(raw["market"], _Cleaned) else list(map(markets.__getitem__, raw["market"]))
            if self.default_market:
                market_values = [m or self.default_market for m in market_values]
        else:
            market_values = [self.default_market or ""] * n
        columns: dict[str, list[Any] | None] = {"id": _ids(raw["id"]), "title": titles, "market": market_values}
        for name in OPTIONAL:
            columns[name] = _optional_texts(raw[name]) if name in wanted and name in raw else None
        if None in titles or "" in market_values:
            keep = [t is not None and m != "" for t, m in zip(titles, market_values)]
            stats.empty_titles += titles.count(None)
            stats.missing_market += sum(1 for t, m in zip(titles, market_values) if t is not None and m == "")
            columns = {k: (list(compress(v, keep)) if v is not None else None) for k, v in columns.items()}
        stats.listings += len(columns["title"])
        return ListingChunk(**columns)  # type: ignore[arg-type]

    # column resolution ------------------------------------------------------------------------------

    def _resolve(self, found: Sequence[str]) -> dict[str, str]:
        """Catalogue field → source column name, or RadarError naming what is missing and what is there."""
        by_lower = {}
        for name in found:
            by_lower.setdefault(str(name).strip().lstrip("\ufeff").lower(), name)
        resolved: dict[str, str] = {}
        for fieldname in COLUMNS:
            wanted = self.columns.get(fieldname, fieldname)
            actual = by_lower.get(wanted.strip().lower())
            if actual is not None:
                resolved[fieldname] = actual
        missing = [f for f in REQUIRED if f not in resolved and not (f == "market" and self.default_market)]
        if missing:
            mapped = [f"{f} (looked for {self.columns[f]!r})" for f in missing if f in self.columns]
            raise RadarError(
                f"{self.name}: missing required column(s) {', '.join(missing)}"
                + (f" [{'; '.join(mapped)}]" if mapped else "")
                + f"; found columns: {', '.join(map(str, found)) or '(none)'}. "
                "Rename them, map them with columns={'title': 'your_column', …}, or give default_market= for a one-market file"
            )
        return resolved

    # text formats ----------------------------------------------------------------------------------

    def _open_binary(self) -> io.BufferedIOBase:
        path = Path(self.source)
        try:
            if path.name.lower().endswith(".gz"):
                return gzip.open(path, "rb")  # type: ignore[return-value]
            return open(path, "rb")
        except FileNotFoundError:
            raise RadarError(f"{path}: catalogue file not found") from None
        except OSError as exc:
            raise RadarError(f"{path}: cannot open the catalogue ({exc.strerror or exc})") from None

    def _lines(self, stats: CatalogueStats) -> Iterator[str]:
        """Decoded lines (line ends kept, as csv wants them), UTF-8 with a per-line legacy fallback.

        Lines come from StringIO objects chained in C, so no Python frame runs per line.
        """
        return chain.from_iterable(map(_string_lines, self._blocks(stats)))

    def _blocks(self, stats: CatalogueStats) -> Iterator[str]:
        """The file as decoded text blocks of about 1 MiB, each ending at a line end."""
        with self._open_binary() as handle:
            head = handle.read(4)
            if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                # Spreadsheet "Unicode text" exports: UTF-16 throughout, no fallback needed.
                text = io.TextIOWrapper(io.BufferedReader(_Prepend(head, handle)), encoding="utf-16", newline="")  # type: ignore[arg-type]
                while lines := text.readlines(_BLOCK):
                    yield "".join(lines)
                return
            carry = head[3:] if head.startswith(codecs.BOM_UTF8) else head
            while True:
                block = handle.read(_BLOCK)
                data = carry + block
                if not block:
                    carry = b""
                else:
                    cut = data.rfind(b"\n") + 1
                    if cut == 0:
                        carry = data
                        continue
                    data, carry = data[:cut], data[cut:]
                if data:
                    try:
                        yield data.decode("utf-8")
                    except UnicodeDecodeError:
                        yield self._decode_lines(data, stats)
                if not block:
                    return

    @staticmethod
    def _decode_lines(data: bytes, stats: CatalogueStats) -> str:
        out = []
        for line in data.splitlines(keepends=True):
            try:
                out.append(line.decode("utf-8"))
            except UnicodeDecodeError:
                stats.fallback_decoded_lines += 1
                out.append(line.decode("utf-8", errors="radar_cp1252_fallback"))
        return "".join(out)

    def _csv_reader(self, stats: CatalogueStats) -> tuple[Iterator[list[str]], list[str], str]:
        """A csv.reader positioned after the header row, the header and the delimiter."""
        lines = self._lines(stats)
        first = next(lines, None)
        if first is None:
            raise RadarError(f"{self.name}: the file is empty; a catalogue needs a header row with id, title and market")
        delimiter = self.delimiter or max((",", ";", "\t", "|"), key=first.count)
        if str(self.source).lower().removesuffix(".gz").endswith(".tsv") and not self.delimiter:
            delimiter = "\t"
        reader = csv.reader(chain((first,), lines), delimiter=delimiter)
        return reader, next(reader), delimiter

    def _read_csv(self, wanted: set[str], stats: CatalogueStats) -> Iterator[dict[str, list[Any]]]:
        import pyarrow as pa

        fast = not self._utf16()  # pyarrow reads UTF-8 only
        # For pyarrow the header is only peeked at here (its stats are not this pass's).
        reader, header, delimiter = self._csv_reader(CatalogueStats() if fast else stats)
        resolved = self._resolve(header)
        index = {name: header.index(col) for name, col in resolved.items() if name in REQUIRED or name in wanted}
        done = 0
        if fast:
            try:
                for batch in self._read_csv_arrow(len(header), delimiter, index):
                    yield batch
                    done += len(batch["title"])
                return
            except pa.ArrowInvalid as exc:
                # Rows of uneven width, text that is not UTF-8…: the csv module reads on from where pyarrow stopped.
                log.debug("%s: pyarrow stopped after %d rows (%s); reading on with the csv module", self.name, done, exc)
            reader, header, delimiter = self._csv_reader(stats)
        if done:
            deque(islice(filter(None, reader), done), maxlen=0)  # rows already read (blank lines never count)
        width = max(index.values()) + 1
        while rows := list(islice(reader, self.chunk_size)):
            if min(map(len, rows)) < width:
                # Blank lines and short rows (trailing empty fields left out by some exporters).
                rows = [r if len(r) >= width else r + [""] * (width - len(r)) for r in rows if any(r)]
            yield {name: list(map(itemgetter(i), rows)) for name, i in index.items()}

    def _read_csv_arrow(self, width: int, delimiter: str, index: dict[str, int]) -> Iterator[dict[str, list[Any]]]:
        """The data rows by pyarrow's multi-threaded CSV reader, the same values as the csv module gives.

        Every column is read as text (no type guessing), quoted fields may hold line breaks, blank lines are
        skipped; a row of another width than the header, or bytes that are not UTF-8, raise ArrowInvalid.
        """
        import pyarrow as pa
        import pyarrow.csv as pacsv

        names = [f"c{i}" for i in range(width)]
        wanted = {name: names[i] for name, i in index.items()}
        reader = pacsv.open_csv(
            str(self.source),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=_ARROW_BLOCK),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.dictionary(pa.int32(), pa.string()) if name in _REPEATED else pa.string()
                              for name, c in wanted.items()},
                include_columns=list(dict.fromkeys(wanted.values())),
            ),
        )
        return self._rechunk(reader, wanted)

    def _rechunk(self, batches: Iterable[Any], columns: Mapping[str, str]) -> Iterator[dict[str, list[Any]]]:
        """pyarrow record batches of any size as column lists of ``chunk_size`` rows (``columns``: field → batch column).

        Dictionary-encoded columns arrive cleaned value by value (see :func:`_pylist`).
        """
        pending: dict[str, list[Any]] = {name: [] for name in columns}
        cleaned: set[str] = set()
        first = next(iter(columns))
        size = self.chunk_size
        for batch in batches:
            for name, column in columns.items():
                array = batch.column(column)
                if name in _REPEATED and hasattr(array, "dictionary"):
                    cleaned.add(name)
                    pending[name] += _pylist(array, _markets, "") if name == "market" else _pylist(array, _texts, None)
                else:
                    pending[name] += array.to_pylist()
            start, rows = 0, len(pending[first])
            while rows - start >= size:
                yield {n: (_Cleaned if n in cleaned else list)(v[start : start + size]) for n, v in pending.items()}
                start += size
            if start:
                pending = {n: v[start:] for n, v in pending.items()}
        if pending[first]:
            yield {n: (_Cleaned(v) if n in cleaned else v) for n, v in pending.items()}

    def _utf16(self) -> bool:
        with self._open_binary() as handle:
            return handle.read(2) in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)

    def _read_jsonl(self, wanted: set[str], stats: CatalogueStats) -> Iterator[dict[str, list[Any]]]:
        lines = self._lines(stats)
        first = next(lines, None)
        while first is not None and not first.strip():
            first = next(lines, None)
        if first is None:
            raise RadarError(f"{self.name}: the file is empty")
        if first.lstrip().startswith("["):
            # A plain JSON array: fine for small files, read whole.
            records = json.loads("".join(chain((first,), lines)))
            if not isinstance(records, list):
                raise RadarError(f"{self.name}: expected JSON lines or one array of objects")
            source: Iterable[Any] = iter(records)
            decode = False
        else:
            source = chain((first,), lines)
            decode = True
        resolved: dict[str, str] | None = None
        names: list[tuple[str, str]] = []
        batch: dict[str, list[Any]] = {}
        count = 0
        bad_shown = 0
        for line_no, item in enumerate(source, 1):
            if decode:
                if not item.strip():
                    continue
                try:
                    record = json.loads(item)
                except json.JSONDecodeError as exc:
                    stats.bad_records += 1
                    if bad_shown < 5:
                        bad_shown += 1
                        log.warning("%s line %d: not valid JSON (%s); skipped", self.name, line_no, exc.msg)
                    continue
            else:
                record = item
            if not isinstance(record, dict):
                stats.bad_records += 1
                continue
            if resolved is None:
                resolved = self._resolve(list(record))
                names = [(name, col) for name, col in resolved.items() if name in REQUIRED or name in wanted]
                batch = {name: [] for name, _ in names}
            for name, col in names:
                batch[name].append(record.get(col))
            count += 1
            if count >= self.chunk_size:
                yield batch
                batch = {name: [] for name, _ in names}
                count = 0
        if count:
            yield batch
        if resolved is None:
            raise RadarError(f"{self.name}: no JSON object found; a catalogue needs records with id, title and market")

    # binary and SQL -------------------------------------------------------------------------------

    def _parquet_file(self, **options: Any) -> Any:
        try:
            import pyarrow.parquet as pq
        except ImportError:  # pragma: no cover - depends on the installation
            raise RadarError(f"{self.name}: reading Parquet needs pyarrow (pip install pyarrow)") from None
        try:
            return pq.ParquetFile(self.source, **options)
        except FileNotFoundError:
            raise RadarError(f"{self.source}: catalogue file not found") from None
        except Exception as exc:  # pyarrow raises its own error types for corrupt files
            raise RadarError(f"{self.source}: not a readable Parquet file ({exc})") from None

    def _read_parquet(self, wanted: set[str], stats: CatalogueStats) -> Iterator[dict[str, list[Any]]]:
        import pyarrow as pa

        parquet = self._parquet_file()
        schema = parquet.schema_arrow
        resolved = self._resolve(schema.names)
        names = {name: col for name, col in resolved.items() if name in REQUIRED or name in wanted}
        repeated = [col for name, col in names.items() if name in _REPEATED and pa.types.is_string(schema.field(col).type)]
        if repeated:
            parquet = self._parquet_file(read_dictionary=repeated)
        batches = parquet.iter_batches(batch_size=self.chunk_size, columns=list(dict.fromkeys(names.values())))
        return self._rechunk(batches, names)

    def _sql_engine(self) -> Any:
        from sqlalchemy import create_engine
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return create_engine(str(self.source))
        except (SQLAlchemyError, ValueError) as exc:
            raise RadarError(f"{self.source}: not a usable database URL ({exc})") from None

    def _sql_table(self, engine: Any) -> Any:
        from sqlalchemy import MetaData, Table
        from sqlalchemy.exc import NoSuchTableError

        schema, _, name = str(self.table).rpartition(".")
        try:
            return Table(name, MetaData(), schema=schema or None, autoload_with=engine)
        except NoSuchTableError:
            raise RadarError(f"{self.name}: no such table in the database") from None

    def _read_sql(self, wanted: set[str], stats: CatalogueStats) -> Iterator[dict[str, list[Any]]]:
        from sqlalchemy import select
        from sqlalchemy.exc import SQLAlchemyError

        engine = self._sql_engine()
        try:
            table = self._sql_table(engine)
            resolved = self._resolve([c.name for c in table.columns])
            names = {name: col for name, col in resolved.items() if name in REQUIRED or name in wanted}
            statement = select(*[table.c[col] for col in names.values()])
            with engine.connect() as connection:
                result = connection.execution_options(stream_results=True, yield_per=self.chunk_size).execute(statement)
                for part in result.partitions(self.chunk_size):
                    yield {name: [row[i] for row in part] for i, name in enumerate(names)}
        except SQLAlchemyError as exc:
            raise RadarError(f"{self.name}: reading the table failed ({exc.__class__.__name__}: {exc})") from None
        finally:
            engine.dispose()

    def _read_records(self, wanted: set[str], stats: CatalogueStats) -> Iterator[dict[str, list[Any]]]:
        records = self._records or ()
        names = list(REQUIRED) + [n for n in OPTIONAL if n in wanted]
        for start in range(0, len(records), self.chunk_size):
            part = records[start : start + self.chunk_size]
            batch: dict[str, list[Any]] = {}
            for name in names:
                try:
                    # Listing objects (the common case): one C-level pass per column.
                    batch[name] = list(map(attrgetter(name), part))
                except AttributeError:
                    batch[name] = [(r.get(name) if isinstance(r, Mapping) else getattr(r, name, None)) for r in part]
            yield batch


class _Cleaned(list):
    """A column whose values are already what :meth:`Catalogue._clean` makes of them."""


def _pylist(array: Any, clean: Callable[[list[Any]], list[Any]], null: Any) -> list[Any]:
    """A dictionary-encoded pyarrow array as a Python list of cleaned values (``null`` for nulls): ``clean``
    runs on the distinct values and numpy spreads the results, so a market or seller repeated a million
    times costs one Python string, not a million."""
    values = np.array([*clean(array.dictionary.to_pylist()), null], dtype=object)
    return values[array.indices.fill_null(len(values) - 1).to_numpy()].tolist()


def _markets(values: list[Any]) -> list[str]:
    return list(map(normalise_market, values))


class _Prepend(io.RawIOBase):
    """A binary stream with some already-read bytes put back in front."""

    def __init__(self, head: bytes, rest: Any) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _string_lines(text: str) -> io.StringIO:
    return io.StringIO(text, newline="")


def open_catalogue(source: Catalogue | str | Path | Iterable[Listing | Mapping[str, Any]], **options: Any) -> Catalogue:
    """A :class:`Catalogue` from a path, URL (with ``table=``), in-memory listings, or an existing Catalogue."""
    if isinstance(source, Catalogue):
        return source
    if isinstance(source, (str, Path)):
        return Catalogue(source, **options)
    return Catalogue.from_records(source, **{k: v for k, v in options.items() if k in ("name", "chunk_size")})
