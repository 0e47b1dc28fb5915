"""Vertical allocation: model layers, Briggs plume rise for stacks, layer fractions per source.

Layers are given by their interfaces in metres above ground (``[0, z1, …, ztop]``), or by sigma
(eta) levels converted to heights with the ICAO/US standard atmosphere (troposphere,
``T0 = 288.15 K``, lapse 6.5 K/km, then isothermal above 11 km).

Plume rise follows the Briggs final-rise formulas as the EPA ISC3 model states them (EPA 1995,
*User's Guide for the Industrial Source Complex (ISC3) Dispersion Models*, Vol. II,
EPA-454/B-95-003b, §1.1.4): buoyancy flux ``Fb = g·vs·ds²·(Ts−Ta)/(4·Ts)`` [m⁴ s⁻³], momentum
flux ``Fm = vs²·ds²·Ta/(4·Ts)`` [m⁴ s⁻²]; neutral/unstable classes A–D: buoyant rise
``21.425·Fb^¾/us`` (Fb < 55) or ``38.71·Fb^⅗/us`` (Fb ≥ 55), momentum rise ``3·ds·vs/us``;
stable classes E–F with ``s = g·(dθ/dz)/Ta`` (dθ/dz 0.020 K/m for E, 0.035 K/m for F): buoyant
rise ``2.6·(Fb/(us·s))^⅓``, momentum rise ``min(1.5·(Fm/(us·√s))^⅓, 3·ds·vs/us)``. ISC3 picks the
buoyant or the momentum formula by comparing Ts − Ta with a crossover temperature difference
derived by equating the two; that is the same as taking the larger of the two rises, which is
what is done here. The stack-top wind is the 10 m wind raised by the rural power law of ISC3
(exponents 0.07, 0.07, 0.10, 0.15, 0.35, 0.55 for A–F), at least 1 m/s. Stack-tip downwash and
the distance dependence of rise are not modelled (final rise only).

The plume spans ``[hs + 0.5·Δh, hs + 1.5·Δh]`` (the "Turner" plume depth = rise, SMOKE
``laypoint`` and CMAQ in-line ``PT3D_DEFN`` default) and is spread uniformly in height over the
layers it overlaps (CMAQ in-line); a plume reaching above the model top puts that part in the top
layer. Fractions of every source sum to 1 exactly, by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grids.grid import open_model_file
from sources.errors import ConfigError

G = 9.80665  # m s-2, standard gravity
#: rural wind-profile exponents of ISC3 per Pasquill class
RURAL_EXPONENT = {"A": 0.07, "B": 0.07, "C": 0.10, "D": 0.15, "E": 0.35, "F": 0.55}
#: potential-temperature gradient for stable classes [K/m] (ISC3 defaults)
DTHETA_DZ = {"E": 0.020, "F": 0.035}

# ICAO standard atmosphere (troposphere)
_T0, _P0, _LAPSE, _R_AIR = 288.15, 101_325.0, 0.0065, 287.05287


def sigma_to_heights(sigma: list[float], ptop_pa: float) -> np.ndarray:
    """Heights [m] of sigma/eta interfaces ``p = ptop + σ·(p0 − ptop)`` in the standard
    atmosphere (surface pressure 101 325 Pa)."""
    s = np.asarray(sigma, dtype=float)
    p = ptop_pa + s * (_P0 - ptop_pa)
    z = _T0 / _LAPSE * (1.0 - (p / _P0) ** (_R_AIR * _LAPSE / G))
    p11 = _P0 * (1 - _LAPSE * 11_000 / _T0) ** (G / (_R_AIR * _LAPSE))
    t11 = _T0 - _LAPSE * 11_000
    above = p < p11
    z[above] = 11_000 + _R_AIR * t11 / G * np.log(p11 / p[above])
    return z


@dataclass(frozen=True)
class Layers:
    """Model layer interfaces in metres above ground, ascending from 0."""

    interfaces: np.ndarray

    def __post_init__(self) -> None:
        z = np.asarray(self.interfaces, dtype=float)
        if z.ndim != 1 or z.size < 2 or z[0] != 0 or np.any(np.diff(z) <= 0):
            raise ConfigError("vertical layers: interfaces must start at 0 m and increase "
                              f"strictly (got {list(np.round(z, 3))})")
        object.__setattr__(self, "interfaces", z)

    @property
    def n(self) -> int:
        return self.interfaces.size - 1

    @property
    def centres(self) -> np.ndarray:
        return 0.5 * (self.interfaces[1:] + self.interfaces[:-1])

    def fractions(self, bottom: np.ndarray, top: np.ndarray) -> np.ndarray:
        """(n_sources, n_layers) shares of plumes spread uniformly over ``[bottom, top]`` m;
        a plume of zero depth goes to the layer containing it; anything above the model top
        goes to the top layer. Rows sum to 1."""
        z = self.interfaces
        bottom = np.clip(np.asarray(bottom, dtype=float), 0.0, None)
        top = np.maximum(np.asarray(top, dtype=float), bottom)
        lo = np.minimum(bottom[:, None], z[-1])
        overlap = np.clip(np.minimum(top[:, None], z[None, 1:]) - np.maximum(bottom[:, None],
                                                                              z[None, :-1]),
                          0.0, None)
        depth = top - bottom
        frac = np.zeros((bottom.size, self.n))
        thick = depth > 0
        frac[thick] = overlap[thick] / depth[thick, None]
        # beyond the model top: the top layer
        frac[thick, -1] += np.clip(top[thick] - np.maximum(bottom[thick], z[-1]), 0, None) \
            / depth[thick]
        thin = ~thick
        if thin.any():
            k = np.clip(np.searchsorted(z, lo[thin, 0], side="right") - 1, 0, self.n - 1)
            frac[np.flatnonzero(thin), k] = 1.0
        return frac


def stack_top_wind(u10: float, height: np.ndarray, stability: np.ndarray) -> np.ndarray:
    """Wind at stack top [m/s] by the ISC3 rural power law from 10 m, at least 1 m/s."""
    p = np.array([RURAL_EXPONENT[s] for s in stability])
    return np.maximum(u10 * (np.maximum(height, 10.0) / 10.0) ** p, 1.0)


def briggs_rise(height: np.ndarray, diameter: np.ndarray, velocity: np.ndarray,
                exit_temp: np.ndarray, ambient_temp: float | np.ndarray, u10: float,
                stability: np.ndarray) -> dict[str, np.ndarray]:
    """Final plume rise [m] per stack (ISC3 Briggs, see the module docstring).

    Returns ``rise``, ``fb`` (buoyancy flux), ``fm`` (momentum flux), ``us`` (stack-top wind)
    and ``buoyant`` (True where the buoyant formula gave the larger rise).
    """
    hs, ds, vs, ts = (np.asarray(a, dtype=float) for a in (height, diameter, velocity,
                                                           exit_temp))
    stability = np.asarray([str(s).upper() for s in np.atleast_1d(stability)])
    if stability.size == 1 and hs.size > 1:
        stability = np.repeat(stability, hs.size)
    bad = sorted(str(s) for s in set(stability) - set(RURAL_EXPONENT))
    if bad:
        raise ConfigError(f"unknown Pasquill stability class {bad[0]!r}; use A, B, C, D, E or F")
    ta = np.broadcast_to(np.asarray(ambient_temp, dtype=float), hs.shape)
    us = stack_top_wind(u10, hs, stability)
    dt = np.maximum(ts - ta, 0.0)
    fb = G * vs * ds ** 2 * dt / (4.0 * ts)
    fm = vs ** 2 * ds ** 2 * ta / (4.0 * ts)
    momentum_neutral = 3.0 * ds * vs / us
    buoy = np.where(fb < 55.0, 21.425 * fb ** 0.75, 38.71 * fb ** 0.6) / us
    mom = momentum_neutral
    stable = np.isin(stability, ["E", "F"])
    if stable.any():
        dtdz = np.array([DTHETA_DZ.get(s, 0.0) for s in stability])
        s = G * dtdz / ta
        with np.errstate(divide="ignore", invalid="ignore"):
            buoy_st = 2.6 * (fb / (us * s)) ** (1 / 3)
            mom_st = np.minimum(1.5 * (fm / (us * np.sqrt(s))) ** (1 / 3), momentum_neutral)
        buoy = np.where(stable, buoy_st, buoy)
        mom = np.where(stable, mom_st, mom)
    rise = np.maximum(buoy, mom)
    return {"rise": rise, "fb": fb, "fm": fm, "us": us, "buoyant": buoy >= mom}


def plume_bounds(height: np.ndarray, rise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Plume bottom and top [m]: ``hs + 0.5·Δh`` and ``hs + 1.5·Δh`` (Turner depth = rise)."""
    return height + 0.5 * rise, height + 1.5 * rise


#: the I/O API horizontal header items of MCIP files (``PREP/mcip/src/comheader.f90:49-71``)
IOAPI_GRID_ATTRIBUTES = ("GDTYP", "P_ALP", "P_BET", "P_GAM", "XCENT", "YCENT", "XORIG", "YORIG",
                         "XCELL", "YCELL", "NCOLS", "NROWS")


@dataclass(frozen=True, eq=False)
class ModelLayers:
    """A model's own layers, per cell: CMAQ's from MCIP's ``METCRO3D``
    (:func:`read_metcro3d`) or WRF's η layers from the run's ``wrfinput_d0N``
    (:func:`read_wrfinput_layers`).

    CCTM takes NLAYS, VGTYP, VGTOP and VGLVLS from MET_CRO_3D
    (``CCTM/src/grid/cartesian/VGRD_DEFN.F:97-147``, 5.4) and puts emission-file layer k into
    model layer k (``CCTM/src/emis/emis/desid_module.F:959-970``); WRF-Chem adds level k of a
    wrfchemi to η layer k (``chem/module_emissions_anthropogenics.F:86-88``). The layer tops are
    MCIP's ``ZF`` ("full-layer height above ground", m; ``PREP/mcip/src/init_ctm.f90``)
    averaged over the file's time steps, or WRF's ``(PH + PHB)/g − HGT`` at the w levels
    (``dyn_em/module_big_step_utilities_em.F:4869``), per cell (:attr:`zf`) and over the
    domain (:attr:`layers`).
    """

    path: Path
    #: ``METCRO3D`` or ``wrfinput``
    source: str
    #: VGTYP (7 = VGWRFEM when WRF's HYBRID_OPT <= 0, else -9999), VGTOP [Pa], VGLVLS (WRF ZNW)
    vgtyp: int
    vgtop: float
    vglvls: tuple[float, ...]
    #: layer tops per cell [m above ground], (nlays, nrows, ncols), time mean
    zf: np.ndarray
    #: the I/O API horizontal header (GDTYP ... NROWS) of a METCRO3D; None for a wrfinput
    horizontal: dict[str, float] | None

    @property
    def n(self) -> int:
        return self.zf.shape[0]

    @property
    def layers(self) -> Layers:
        """Domain-mean layer interfaces ``[0, mean ZF_1, ..., mean ZF_n]`` [m]."""
        return Layers(np.concatenate([[0.0], self.zf.mean(axis=(1, 2))]))

    def cell_layers(self, row: int, col: int) -> Layers:
        """The interfaces of one cell (row, col from the south-west, 0-based) [m]."""
        return Layers(np.concatenate([[0.0], self.zf[:, row, col]]))

    def fractions(self, rows: np.ndarray, cols: np.ndarray, bottom: np.ndarray,
                  top: np.ndarray) -> np.ndarray:
        """(n, nlays) shares of plumes ``[bottom, top]`` m spread over the layers of the cell
        each lies in (:meth:`Layers.fractions` per cell); a row or column of -1 (outside the
        grid) takes the domain-mean layers. Rows sum to 1."""
        rows, cols = np.asarray(rows, dtype=int), np.asarray(cols, dtype=int)
        bottom, top = np.asarray(bottom, dtype=float), np.asarray(top, dtype=float)
        out = np.zeros((rows.size, self.n))
        inside = (rows >= 0) & (cols >= 0)
        if (~inside).any():
            out[~inside] = self.layers.fractions(bottom[~inside], top[~inside])
        cells = rows * self.zf.shape[2] + cols
        for c in np.unique(cells[inside]):
            sel = np.flatnonzero(inside & (cells == c))
            r, q = divmod(int(c), self.zf.shape[2])
            out[sel] = self.cell_layers(r, q).fractions(bottom[sel], top[sel])
        return out

    def check_grid(self, horizontal: dict[str, Any], name: str) -> None:
        """Refuse a grid whose I/O API header (``ioapi_horizontal``) is not this METCRO3D's."""
        bad = [f"{k} {float(horizontal[k]):.10g} (METCRO3D {self.horizontal[k]:.10g})"
               for k in IOAPI_GRID_ATTRIBUTES
               if abs(float(horizontal[k]) - float(self.horizontal[k]))
               > 1e-6 * max(1.0, abs(float(self.horizontal[k])))]
        if bad:
            raise ConfigError(f"{self.path}: grid {name!r} is not the grid of this METCRO3D: "
                              + ", ".join(bad) + "; build on MCIP's GRIDDESC grid "
                              "(grid: {griddesc: GRIDDESC, name: <GDNAM>})")


def read_metcro3d(path: str | Path) -> ModelLayers:
    """The layers of an MCIP ``METCRO3D`` file (I/O API GRDDED3: header VGTYP, VGTOP, VGLVLS
    and the horizontal grid, ``PREP/mcip/src/comheader.f90:49-71``; variable
    ``ZF(TSTEP, LAY, ROW, COL)``)."""
    path = Path(path)
    with open_model_file(path, "the METCRO3D file") as nc:
        missing = [a for a in ("VGTYP", "VGTOP", "VGLVLS", "NLAYS", *IOAPI_GRID_ATTRIBUTES)
                   if a not in nc.ncattrs()]
        if missing or "ZF" not in nc.variables:
            raise ConfigError(f"{path}: not an MCIP METCRO3D file: "
                              + (f"global attributes {missing} missing" if missing else
                                 "no ZF (full-layer height) variable"))
        vglvls = tuple(float(v) for v in np.atleast_1d(nc.getncattr("VGLVLS")))
        zf = np.asarray(nc.variables["ZF"][:], dtype=np.float64)
        nlays = int(nc.getncattr("NLAYS"))
        if zf.ndim != 4 or zf.shape[1] != nlays or len(vglvls) != nlays + 1:
            raise ConfigError(f"{path}: ZF is {zf.shape} with NLAYS {nlays} and "
                              f"{len(vglvls)} VGLVLS; expected (TSTEP, NLAYS, ROW, COL) and "
                              "NLAYS + 1 levels")
        horizontal = {k: float(nc.getncattr(k)) for k in IOAPI_GRID_ATTRIBUTES}
        out = ModelLayers(path, "METCRO3D", int(nc.getncattr("VGTYP")),
                          float(nc.getncattr("VGTOP")), vglvls, zf.mean(axis=0), horizontal)
    _check_tops(out.zf, path, "ZF")
    return out


def _check_tops(z: np.ndarray, path: Path, what: str) -> None:
    if not np.all(np.isfinite(z)) or np.any(z[0] <= 0) or np.any(np.diff(z, axis=0) <= 0):
        raise ConfigError(f"{path}: {what} must be positive and increase with the layer in "
                          "every cell (layer tops in m above ground)")


#: WRF's gravity (``share/module_model_constants.F``: g = 9.81)
WRF_G = 9.81


def read_wrfinput_layers(path: str | Path) -> ModelLayers:
    """WRF's η layers of a ``wrfinput_d0N``: tops ``(PH + PHB)/g − HGT`` at w levels 2 … nz+1
    of the first time (``Registry/Registry.EM_COMMON:199-200, 1406``), VGLVLS = ZNW, VGTOP =
    P_TOP and VGTYP as MCIP would write them (7 if HYBRID_OPT <= 0, else −9999,
    ``PREP/mcip/src/setgriddefs.f90:450-455``)."""
    path = Path(path)
    with open_model_file(path, "the wrfinput file") as nc:
        missing = [v for v in ("PH", "PHB", "HGT", "ZNW", "P_TOP") if v not in nc.variables]
        if missing:
            raise ConfigError(f"{path}: variables {missing} are missing; a wrfinput written by "
                              "real.exe has them (a geo_em file has no layers)")
        z_w = (np.asarray(nc["PH"][0], dtype=np.float64)
               + np.asarray(nc["PHB"][0], dtype=np.float64)) / WRF_G
        hgt = np.asarray(nc["HGT"][0], dtype=np.float64)
        znw = tuple(float(v) for v in np.asarray(nc["ZNW"][0]))
        ptop = float(np.asarray(nc["P_TOP"][:]).ravel()[0])
        hybrid = int(nc.getncattr("HYBRID_OPT")) if "HYBRID_OPT" in nc.ncattrs() else 0
    zf = z_w[1:] - hgt[None]
    _check_tops(zf, path, "(PH + PHB)/g − HGT")
    return ModelLayers(path, "wrfinput", 7 if hybrid <= 0 else -9999, ptop, znw, zf, None)
