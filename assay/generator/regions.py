"""US state codes and the zenith region rule (location "City, ST" -> region)."""
from __future__ import annotations

WEST_COAST = {"CA", "OR", "WA", "AK", "HI"}
EAST_COAST = {"ME", "NH", "MA", "RI", "CT", "NY", "NJ", "PA", "DE", "MD", "DC", "VA", "NC", "SC", "GA", "FL"}
US_STATES = {
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS", "KY",
    "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY", "NC", "ND",
    "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY", "DC",
}
assert len(US_STATES) == 51


def region_of_code(code: str | None) -> str | None:
    if code in WEST_COAST:
        return "West Coast"
    if code in EAST_COAST:
        return "East Coast"
    if code in US_STATES:
        return "Central"
    return None


def region_of_location(location: str | None) -> str | None:
    """The code is what follows the last comma, trimmed; empty/NULL/non-US give NULL."""
    if not location or "," not in location:
        return None
    return region_of_code(location.rsplit(",", 1)[1].strip())
