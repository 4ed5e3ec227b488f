"""The export's file writers: a CSV a spreadsheet reads as UTF-8 without running formulas, an XLSX zip whose
sheet keeps numbers as numbers and text XML can hold."""

import csv
import zipfile
from xml.etree import ElementTree

from v2mom_cli import spreadsheet

NS = {"s": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}


def test_column_names_go_past_z():
    assert [spreadsheet.column_name(i) for i in (0, 25, 26, 27, 701, 702)] == ["A", "Z", "AA", "AB", "ZZ", "AAA"]


def test_csv_quotes_what_would_run_as_a_formula(tmp_path):
    path = tmp_path / "out.csv"
    spreadsheet.write_csv(path, ["A", "B"], [["=HYPERLINK(\"x\")", 12.5], ["Émile", None]])
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # Excel reads the BOM as UTF-8
    with path.open(encoding="utf-8-sig") as sheet:
        assert list(csv.reader(sheet)) == [["A", "B"], ["'=HYPERLINK(\"x\")", "12.5"], ["Émile", ""]]


def test_xlsx_keeps_numbers_and_cleans_text(tmp_path):
    path = tmp_path / "out.xlsx"
    spreadsheet.write_xlsx(path, ["Name", "Progress %"], [["A & B <c>\x01", 62.5], ["", None]])
    with zipfile.ZipFile(path) as book:
        assert book.testzip() is None
        assert set(book.namelist()) >= {"[Content_Types].xml", "_rels/.rels", "xl/workbook.xml",
                                         "xl/_rels/workbook.xml.rels", "xl/worksheets/sheet1.xml"}
        sheet = ElementTree.fromstring(book.read("xl/worksheets/sheet1.xml"))
    rows = sheet.findall("s:sheetData/s:row", NS)
    text, number = rows[1].findall("s:c", NS)
    assert (text.get("r"), text.get("t"), text.find(".//s:t", NS).text) == ("A2", "inlineStr", "A & B <c>")
    assert (number.get("r"), number.get("t"), number.find("s:v", NS).text) == ("B2", None, "62.5")
    assert rows[2].findall("s:c", NS) == []  # empty cells are left out
