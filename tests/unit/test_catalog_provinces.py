"""Provinces of Vietnam and topic slugs: what users type resolves to one canonical unit."""

from __future__ import annotations

import pytest

from eventhunting.domain.errors import InvalidInput
from eventhunting.domain.provinces import PROVINCE_DIRECTORY, PROVINCES
from eventhunting.domain.slugs import fold, slugify


def test_the_directory_holds_the_34_current_units_with_unique_slugs() -> None:
    assert len(PROVINCES) == 34
    assert len({province.slug for province in PROVINCES}) == 34
    assert sum(province.kind == "city" for province in PROVINCES) == 6


@pytest.mark.parametrize(
    "typed",
    ["Hà Nội", "ha noi", "HA-NOI", "hà nội", "ha-noi", "  Ha   Noi  ", "Thành phố Hà Nội"],
)
def test_a_province_is_found_by_name_or_slug_ignoring_case_and_diacritics(typed: str) -> None:
    assert PROVINCE_DIRECTORY.resolve(typed).name == "Hà Nội"


def test_d_with_stroke_folds_to_d() -> None:
    assert PROVINCE_DIRECTORY.resolve("DA NANG").name == "Đà Nẵng"
    assert PROVINCE_DIRECTORY.resolve("đắk lắk").slug == "dak-lak"


@pytest.mark.parametrize(
    ("former", "current"),
    [
        ("Hà Giang", "Tuyên Quang"),
        ("Bình Dương", "Hồ Chí Minh"),
        ("Bà Rịa - Vũng Tàu", "Hồ Chí Minh"),
        ("quang nam", "Đà Nẵng"),
        ("Hoà Bình", "Phú Thọ"),
    ],
)
def test_a_former_province_maps_to_the_unit_that_absorbed_it(former: str, current: str) -> None:
    assert PROVINCE_DIRECTORY.resolve(former).name == current


def test_an_administrative_prefix_is_ignored() -> None:
    assert PROVINCE_DIRECTORY.resolve("TP. Hồ Chí Minh").slug == "ho-chi-minh"
    assert PROVINCE_DIRECTORY.resolve("Tỉnh Lâm Đồng").slug == "lam-dong"


@pytest.mark.parametrize("typed", ["", "Atlantis", "ha", "Hà Nội Mới"])
def test_an_unknown_province_is_invalid_province(typed: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        PROVINCE_DIRECTORY.resolve(typed)
    assert raised.value.code == "invalid_province"
    assert raised.value.extra["errors"][0]["field"] == "province"


def test_fold_strips_marks_and_lowers_case() -> None:
    assert fold("Nguyễn Đức Thắng") == "nguyen duc thang"


def test_slugify_turns_runs_of_other_characters_into_one_hyphen() -> None:
    assert slugify("  Nhạc Sống -- & Jazz!! ") == "nhac-song-jazz"
    assert slugify("!!!") == ""
