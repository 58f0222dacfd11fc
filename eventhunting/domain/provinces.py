"""Vietnam's 34 provincial-level units (in force 2025-07-01) and lookup by name or slug."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import msgspec

from eventhunting.domain.errors import InvalidInput
from eventhunting.domain.slugs import slugify


class Province(msgspec.Struct, frozen=True, kw_only=True):
    """A provincial-level unit; `merged_from` are former provinces it absorbed."""

    slug: str
    name: str
    kind: str
    merged_from: tuple[str, ...] = ()


# Resolution 202/2025/QH15 of the National Assembly, in force 2025-07-01:
# 34 provincial-level units (6 centrally-run cities, 28 provinces).
PROVINCES: tuple[Province, ...] = (
    Province(slug="ha-noi", name="Hà Nội", kind="city", merged_from=()),
    Province(slug="hue", name="Huế", kind="city", merged_from=()),
    Province(slug="lai-chau", name="Lai Châu", kind="province", merged_from=()),
    Province(slug="dien-bien", name="Điện Biên", kind="province", merged_from=()),
    Province(slug="son-la", name="Sơn La", kind="province", merged_from=()),
    Province(slug="lang-son", name="Lạng Sơn", kind="province", merged_from=()),
    Province(slug="quang-ninh", name="Quảng Ninh", kind="province", merged_from=()),
    Province(slug="thanh-hoa", name="Thanh Hóa", kind="province", merged_from=()),
    Province(slug="nghe-an", name="Nghệ An", kind="province", merged_from=()),
    Province(slug="ha-tinh", name="Hà Tĩnh", kind="province", merged_from=()),
    Province(slug="cao-bang", name="Cao Bằng", kind="province", merged_from=()),
    Province(slug="tuyen-quang", name="Tuyên Quang", kind="province", merged_from=("Hà Giang",)),
    Province(slug="lao-cai", name="Lào Cai", kind="province", merged_from=("Yên Bái",)),
    Province(slug="thai-nguyen", name="Thái Nguyên", kind="province", merged_from=("Bắc Kạn",)),
    Province(
        slug="phu-tho", name="Phú Thọ", kind="province", merged_from=("Vĩnh Phúc", "Hòa Bình")
    ),
    Province(slug="bac-ninh", name="Bắc Ninh", kind="province", merged_from=("Bắc Giang",)),
    Province(slug="hung-yen", name="Hưng Yên", kind="province", merged_from=("Thái Bình",)),
    Province(slug="hai-phong", name="Hải Phòng", kind="city", merged_from=("Hải Dương",)),
    Province(
        slug="ninh-binh", name="Ninh Bình", kind="province", merged_from=("Hà Nam", "Nam Định")
    ),
    Province(slug="quang-tri", name="Quảng Trị", kind="province", merged_from=("Quảng Bình",)),
    Province(slug="da-nang", name="Đà Nẵng", kind="city", merged_from=("Quảng Nam",)),
    Province(slug="quang-ngai", name="Quảng Ngãi", kind="province", merged_from=("Kon Tum",)),
    Province(slug="gia-lai", name="Gia Lai", kind="province", merged_from=("Bình Định",)),
    Province(slug="khanh-hoa", name="Khánh Hòa", kind="province", merged_from=("Ninh Thuận",)),
    Province(
        slug="lam-dong", name="Lâm Đồng", kind="province", merged_from=("Đắk Nông", "Bình Thuận")
    ),
    Province(slug="dak-lak", name="Đắk Lắk", kind="province", merged_from=("Phú Yên",)),
    Province(
        slug="ho-chi-minh",
        name="Hồ Chí Minh",
        kind="city",
        merged_from=("Bình Dương", "Bà Rịa - Vũng Tàu"),
    ),
    Province(slug="dong-nai", name="Đồng Nai", kind="province", merged_from=("Bình Phước",)),
    Province(slug="tay-ninh", name="Tây Ninh", kind="province", merged_from=("Long An",)),
    Province(slug="can-tho", name="Cần Thơ", kind="city", merged_from=("Sóc Trăng", "Hậu Giang")),
    Province(
        slug="vinh-long", name="Vĩnh Long", kind="province", merged_from=("Bến Tre", "Trà Vinh")
    ),
    Province(slug="dong-thap", name="Đồng Tháp", kind="province", merged_from=("Tiền Giang",)),
    Province(slug="ca-mau", name="Cà Mau", kind="province", merged_from=("Bạc Liêu",)),
    Province(slug="an-giang", name="An Giang", kind="province", merged_from=("Kiên Giang",)),
)

# People write "TP. Hồ Chí Minh" or "Tỉnh Lâm Đồng"; the administrative prefix names no place.
_ADMINISTRATIVE_PREFIX = re.compile(r"^(thanh-pho|tp|tinh)-")


class ProvinceDirectory:
    """Resolves what a user typed (name, slug, former name; any case, with or without
    diacritics) to the unit it means today."""

    def __init__(self, provinces: Iterable[Province] = PROVINCES) -> None:
        self.by_slug: dict[str, Province] = {}
        lookup: dict[str, Province] = {}
        for province in provinces:
            self.by_slug[province.slug] = province
            lookup[province.slug] = province
            lookup[slugify(province.name)] = province
        for province in self.by_slug.values():
            for former in province.merged_from:
                lookup.setdefault(slugify(former), province)
        self._lookup: Mapping[str, Province] = lookup

    def find(self, text: str) -> Province | None:
        key = slugify(text)
        found = self._lookup.get(key)
        if found is None:
            found = self._lookup.get(_ADMINISTRATIVE_PREFIX.sub("", key))
        return found

    def resolve(self, text: str, *, field: str = "province") -> Province:
        """The unit `text` names, or 422 `invalid_province`."""
        found = self.find(text)
        if found is None:
            raise InvalidInput(
                f"{text!r} is not a province or centrally-run city of Vietnam",
                field=field,
                code="invalid_province",
            )
        return found


PROVINCE_DIRECTORY = ProvinceDirectory()
"""The directory of the current units; immutable, safe to share."""
