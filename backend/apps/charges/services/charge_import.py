"""Charges from a spreadsheet (CSV or XLSX) for a clinic without a CRM integration: read the
file, map its columns to charge fields (guessed from Portuguese or English headers), preview
every row's validation, then upsert through the same service as the API.

CSV is read with the standard library (UTF-8 with or without BOM, else Latin-1; `;` or `,`
sniffed), XLSX with openpyxl (first sheet, values not formulas). At most 10,000 data rows.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zipfile import BadZipFile

from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException

from apps.charges.constants import MAX_CHARGES_PER_REQUEST

#: Charge fields a column can fill, with the header spellings that guess them.
IMPORT_FIELDS: dict[str, tuple[str, ...]] = {
    "external_id": ("external_id", "id", "fatura", "parcela", "codigo", "numero", "invoice"),
    "phone": ("phone", "telefone", "celular", "whatsapp", "fone"),
    "name": ("name", "nome", "cliente", "paciente", "devedor"),
    "amount": ("amount", "valor", "value", "valor_parcela"),
    "due_date": ("due_date", "vencimento", "data_vencimento", "due"),
    "cadence": ("cadence", "regua", "cadencia"),
    "description": ("description", "descricao", "referente"),
    "document": ("document", "documento", "cpf", "cnpj", "cpf_cnpj"),
    "debtor_external_id": ("debtor_external_id", "id_cliente", "id_paciente", "codigo_cliente", "prontuario"),
    "payment_link": ("payment_link", "link", "link_pagamento"),
    "pix_code": ("pix_code", "pix", "pix_copia_e_cola"),
    "boleto_line": ("boleto_line", "boleto", "linha_digitavel"),
}
REQUIRED_FIELDS = ("external_id", "phone", "name", "amount", "due_date")


class ImportFileError(ValueError):
    """The file cannot be read as a table."""


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


def read_table(*, file_name: str, content: bytes) -> Table:
    if file_name.lower().endswith(".xlsx"):
        return _read_xlsx(content)
    if file_name.lower().endswith((".csv", ".txt")):
        return _read_csv(content)
    raise ImportFileError("Send a .csv or .xlsx file.")


def _read_csv(content: bytes) -> Table:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = content.decode("latin-1")
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=";,\t")
    except csv.Error:
        dialect = csv.excel
    rows = [row for row in csv.reader(io.StringIO(text), dialect) if any(cell.strip() for cell in row)]
    return _table(rows)


def _read_xlsx(content: bytes) -> Table:
    try:
        workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except (InvalidFileException, BadZipFile, OSError, KeyError, ValueError) as exc:
        raise ImportFileError("This is not a readable .xlsx file.") from exc
    try:
        sheet = workbook.worksheets[0]
        rows = []
        for values in sheet.iter_rows(values_only=True):
            cells = [_cell(value) for value in values]
            if any(cells):
                rows.append(cells)
            if len(rows) > MAX_CHARGES_PER_REQUEST + 1:
                break
    finally:
        workbook.close()
    return _table(rows)


def _cell(value: Any) -> str:
    """Spreadsheet cells as the API would get them: dates ISO, numbers plain, text stripped."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    return str(value).strip()


def _table(rows: list[list[str]]) -> Table:
    if len(rows) < 2:
        raise ImportFileError("The file needs a header row and at least one charge.")
    if len(rows) - 1 > MAX_CHARGES_PER_REQUEST:
        raise ImportFileError(f"At most {MAX_CHARGES_PER_REQUEST} charges per file.")
    headers = [cell.strip() for cell in rows[0]]
    width = len(headers)
    return Table(headers, [(row + [""] * width)[:width] for row in rows[1:]])


def _normalise(header: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", header).encode("ascii", "ignore").decode().lower()
    return "_".join(ascii_text.replace("-", " ").replace("/", " ").split())


def guess_mapping(headers: list[str]) -> dict[str, int]:
    """field → column index, for the headers that name a field."""
    normalised = [_normalise(header) for header in headers]
    mapping: dict[str, int] = {}
    for field, spellings in IMPORT_FIELDS.items():
        for index, name in enumerate(normalised):
            if name in spellings and index not in mapping.values():
                mapping[field] = index
                break
    return mapping


def charges_from_table(table: Table, mapping: dict[str, int]) -> list[dict[str, Any]]:
    """Rows as API charges (only mapped, non-empty cells), ready for validate/upsert."""
    return [{field: row[index] for field, index in mapping.items() if row[index] != ""} for row in table.rows]
