import numpy as np
import pytest

from pipeline.temporal import load_profiles, load_sectors, temporal_factors, utc_hours
from sources.errors import ConfigError


@pytest.fixture()
def factors(tables):
    return temporal_factors(tables.sectors, tables.profiles, 2024)


def f_at(factors, sector, utc):
    return float(factors.sel(sector=sector, time=np.datetime64(utc)))


def test_every_sector_sums_to_one_over_the_utc_year(factors):
    assert factors.sizes["time"] == 8784  # 2024 is a leap year: 366 × 24 hours
    np.testing.assert_allclose(factors.sum("time"), 1.0, rtol=0, atol=1e-13)
    assert str(factors.time.values[0]) .startswith("2024-01-01T00")
    assert str(factors.time.values[-1]).startswith("2024-12-31T23")


def test_local_profile_is_shifted_to_utc(factors):
    road = factors.sel(sector="road").to_series()
    # the road profile puts everything in local hour 8 (08:00-09:00 CST) = 00:00 UTC
    nonzero = road[road > 0]
    assert len(nonzero) == 366
    assert set(nonzero.index.hour) == {0}


def test_spring_festival_and_tiaoxiu(factors):
    # weekday weights of 'work': Mon-Fri 2, Sat 1, Sun 0.5 (local dates)
    monday = f_at(factors, "road", "2024-02-19T00")        # ordinary Monday
    festival = f_at(factors, "road", "2024-02-12T00")      # Monday, Spring Festival holiday
    saturday = f_at(factors, "road", "2024-05-18T00")      # ordinary Saturday
    makeup_sat = f_at(factors, "road", "2024-05-11T00")    # 调休: Saturday worked for Labour Day
    sunday = f_at(factors, "road", "2024-02-25T00")
    assert festival == pytest.approx(sunday, rel=1e-12)
    assert monday / festival == pytest.approx(4.0, rel=1e-12)
    assert makeup_sat == pytest.approx(monday, rel=1e-12)
    assert makeup_sat / saturday == pytest.approx(2.0, rel=1e-12)


def test_holidays_can_be_switched_off(tables):
    f = temporal_factors(tables.sectors, tables.profiles, 2024, holidays=False)
    assert f.sel(sector="road", time=np.datetime64("2024-02-12T00")) == pytest.approx(
        float(f.sel(sector="road", time=np.datetime64("2024-02-19T00"))), rel=1e-12)


def test_flat_sector_is_uniform(factors):
    np.testing.assert_allclose(factors.sel(sector="power"), 1 / 8784, rtol=1e-12)


def test_utc_hours_non_leap_year():
    assert len(utc_hours(2023)) == 8760


def test_profile_table_errors(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text("profile_id,kind,index,value,reference\n" +
                 "".join(f"x,hour,{h},1,r\n" for h in range(23)))
    with pytest.raises(ConfigError, match=r"profile 'x' \(hour\) has indices .*expected each of 0..23"):
        load_profiles(p)
    p.write_text("profile_id,kind,index,value,reference\nx,day,1,1,r\n")
    with pytest.raises(ConfigError, match=r"row 1, column 'kind': unknown kind; got 'day'"):
        load_profiles(p)
    p.write_text("profile_id,kind,index,value,reference\nx,month,1,-2,r\n")
    with pytest.raises(ConfigError, match=r"row 1, column 'value'"):
        load_profiles(p)


def test_sector_needs_existing_profiles(tmp_path, tables):
    s = tmp_path / "s.csv"
    s.write_text("sector,month_profile,weekday_profile,hour_profile,holiday_as,reference\n"
                 "power,flat,flat,nope,none,r\n")
    with pytest.raises(ConfigError, match=r"row 1, column 'hour_profile': no hour profile 'nope'"):
        load_sectors(s, tables.profiles)


def test_year_whose_next_new_year_is_not_yet_in_the_calendar(tables):
    """2026's last UTC hours are local 1 January 2027 (not in chinesecalendar 1.11)."""
    f = temporal_factors(tables.sectors, tables.profiles, 2026)
    np.testing.assert_allclose(f.sum("time"), 1.0, atol=1e-13)


def test_shipped_road_profile_is_meic2ctm_in_local_time_with_a_spring_festival_period():
    """Road: the meic2ctm transportation profile shifted from UTC to local time (UTC index 17,
    its minimum, is 01:00 local); the Spring Festival days take 0.8 × the Sunday weight, and every
    sector still sums to exactly 1 over the year."""
    from pathlib import Path

    cfg = Path(__file__).resolve().parent.parent / "config"
    profiles = load_profiles(cfg / "temporal_profiles.csv")
    sectors = load_sectors(cfg / "sectors.csv", profiles)
    hour = profiles["meic2ctm_tra"]["hour"]
    assert hour.mean() == pytest.approx(1.0) and int(np.argmin(hour)) == 1
    night = (hour[22:].sum() + hour[:6].sum()) / 24
    assert night == pytest.approx(0.143, abs=0.001)  # TNO F: 0.073
    road = sectors.set_index("sector").loc["road"]
    assert (road["hour_profile"], road["period"], road["period_factor"]) == \
        ("meic2ctm_tra", "Spring Festival", 0.8)
    f = temporal_factors(sectors, profiles, 2024)
    np.testing.assert_allclose(f.sum("time"), 1.0, rtol=0, atol=1e-13)
    # local 12:00 = 04:00 UTC; Monday 12 Feb 2024 (festival) vs Sunday 25 Feb (same month)
    festival = f_at(f, "road", "2024-02-12T04")
    sunday = f_at(f, "road", "2024-02-25T04")
    assert festival / sunday == pytest.approx(0.8, rel=1e-12)
    assert f_at(f, "shipping", "2024-02-12T04") == f_at(f, "shipping", "2024-02-25T04")
    # without the period factor the year's other hours carry a little less
    plain = temporal_factors(sectors.assign(period="none"), profiles, 2024)
    assert f_at(f, "road", "2024-03-04T04") > f_at(plain, "road", "2024-03-04T04")


def test_period_by_date_range_and_bad_periods(tmp_path, tables):
    sectors = tables.sectors.assign(period="2024-03-01/2024-03-02", period_factor=2.0)
    f = temporal_factors(sectors, tables.profiles, 2024)
    np.testing.assert_allclose(f.sum("time"), 1.0, rtol=0, atol=1e-13)
    for sector in sectors["sector"]:  # Friday 1 March (in the period) vs Friday 8 March, 00 UTC
        a, b = f_at(f, sector, "2024-03-01T00"), f_at(f, sector, "2024-03-08T00")
        assert a == pytest.approx(2 * b, rel=1e-12)
    path = tmp_path / "s.csv"
    for bad, col in (("2024-03-05/2024-03-01", "period"), ("Lantern Festival", "period")):
        tables.sectors.assign(period=bad, period_factor=1).to_csv(path, index=False)
        with pytest.raises(ConfigError, match=f"column '{col}'"):
            load_sectors(path, tables.profiles)
    tables.sectors.assign(period="none", period_factor=0).to_csv(path, index=False)
    with pytest.raises(ConfigError, match="period_factor"):
        load_sectors(path, tables.profiles)
