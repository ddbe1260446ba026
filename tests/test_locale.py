"""The translations: every string of ours is in the Russian catalog, translated and not fuzzy, and
the committed .mo files say what their .po files say.

The catalog check runs `makemessages` over a copy of the code, so a string wrapped in gettext but
never added to locale/ fails here, naming it. It needs GNU gettext (xgettext, msgmerge): without
it the test skips, saying what to install; with REQUIRE_SERVICES=1 (CI) it fails instead.
"""

from __future__ import annotations

import ast
import gettext
import os
import re
import shutil
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import translation

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("orders", "fulfillment", "fulfillment_site")
MAKEMESSAGES_IGNORE = ["*/migrations/*", "*/__pycache__/*"]


def po_entries(path: Path) -> list[dict]:
    """The entries of a .po file: {"msgctxt"?, "msgid", "msgid_plural"?, "msgstr" | "msgstr[N]"..., "fuzzy"}."""
    entries = []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        entry: dict = {"fuzzy": False}
        key = None
        for line in block.splitlines():
            if line.startswith("#,") and "fuzzy" in line:
                entry["fuzzy"] = True
            elif line.startswith("#"):
                continue
            elif match := re.match(r"^(msgctxt|msgid|msgid_plural|msgstr(?:\[\d\])?) (\".*\")$", line):
                key = match.group(1)
                entry[key] = ast.literal_eval(match.group(2))
            elif line.startswith('"') and key:
                entry[key] += ast.literal_eval(line)
        if entry.get("msgid"):
            entries.append(entry)
    return entries


def untranslated(path: Path) -> list[str]:
    """The msgids of `path` that are fuzzy, have an empty translation, or (plurals) lack one of
    the forms the catalog's Plural-Forms header declares (msgfmt --check refuses such a file)."""
    forms = int(re.search(r"nplurals=(\d+)", path.read_text(encoding="utf-8")).group(1))
    bad = []
    for entry in po_entries(path):
        translations = [value for key, value in entry.items() if key.startswith("msgstr")]
        if "msgid_plural" in entry and len(translations) != forms:
            bad.append(f"{entry['msgid']} ({len(translations)} of {forms} plural forms)")
        elif entry["fuzzy"] or not translations or not all(translations):
            bad.append(entry["msgid"] + (" (fuzzy)" if entry["fuzzy"] else ""))
    return bad


def po_catalog(path: Path) -> dict:
    """What gettext would load from the .po: the keys GNUTranslations uses, translated entries only."""
    catalog = {}
    for entry in po_entries(path):
        if entry["fuzzy"]:
            continue
        msgid = entry["msgid"] if "msgctxt" not in entry else f"{entry['msgctxt']}\x04{entry['msgid']}"
        if "msgid_plural" in entry:
            for key, value in entry.items():
                if key.startswith("msgstr[") and value:
                    catalog[(msgid, int(key[7:-1]))] = value
        elif entry.get("msgstr"):
            catalog[msgid] = entry["msgstr"]
    return catalog


def test_the_russian_catalog_translates_every_entry():
    assert untranslated(ROOT / "locale" / "ru" / "LC_MESSAGES" / "django.po") == []


@pytest.mark.parametrize("language", ["ru", "en"])
def test_the_committed_mo_matches_its_po(language):
    folder = ROOT / "locale" / language / "LC_MESSAGES"
    with (folder / "django.mo").open("rb") as compiled:
        loaded = dict(gettext.GNUTranslations(compiled)._catalog)
    loaded.pop("", None)  # the header
    assert loaded == po_catalog(folder / "django.po"), "run `make messages` and commit locale/"


def test_every_translatable_string_is_in_the_russian_catalog(tmp_path, monkeypatch, settings):
    missing_tools = [tool for tool in ("xgettext", "msgmerge", "msguniq") if shutil.which(tool) is None]
    if missing_tools:
        message = f"{', '.join(missing_tools)} not found: install GNU gettext (apt-get install gettext)"
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"REQUIRE_SERVICES=1 but {message}", pytrace=False)
        pytest.skip(message)
    for name in SOURCES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "migrations"))
    shutil.copytree(ROOT / "locale", tmp_path / "locale")
    monkeypatch.chdir(tmp_path)
    settings.LOCALE_PATHS = [tmp_path / "locale"]

    call_command("makemessages", locale=["ru"], ignore_patterns=MAKEMESSAGES_IGNORE, no_obsolete=True, verbosity=0)

    assert untranslated(tmp_path / "locale" / "ru" / "LC_MESSAGES" / "django.po") == [], (
        "strings marked for translation but missing from (or fuzzy in) locale/ru: run `make messages`, translate "
        "them in locale/ru/LC_MESSAGES/django.po, run `make messages` again and commit locale/"
    )


def test_the_admin_and_the_shop_speak_russian_by_default(admin_client, settings):
    settings.LANGUAGE_CODE = "ru"
    page = admin_client.get("/admin/orders/order/").content.decode()
    assert 'lang="ru"' in page
    assert "Выберите заказ для изменения" in page  # Django's words around ours, both Russian
    assert "Заказы" in page and "Select order to change" not in page


def test_the_staff_member_switches_the_admin_to_english(admin_client, settings):
    settings.LANGUAGE_CODE = "ru"
    page = admin_client.get("/admin/").content.decode()
    assert 'id="language-switch"' in page and 'action="/i18n/setlang/"' in page

    response = admin_client.post("/i18n/setlang/", {"language": "en", "next": "/admin/"})

    assert response.status_code == 302
    page = admin_client.get("/admin/").content.decode()
    assert 'lang="en"' in page and "Problems first" in page
    with translation.override("ru"):
        assert admin_client.post("/i18n/setlang/", {"language": "ru", "next": "/admin/"}).status_code == 302
    assert "Сначала проблемы" in admin_client.get("/admin/").content.decode()
