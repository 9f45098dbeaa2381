"""Geometry of an AMS-02-like sampling calorimeter (seed 003).

The ECAL is a stack of 9 superlayers of 18.5 mm (lead foils and scintillating fibres), each
read as 2 layers of 72 cells of 9 mm: an 18 x 72 image.  The fibres of a superlayer run along
one axis, so its cells measure the other coordinate: a layer of *x* cells (fibres along y)
measures x, a layer of *y* cells measures y.  Superlayers alternate; 5 measure one coordinate
and 4 the other (AMS-02: the first superlayer measures x, so x has 10 layers and y 8).

Frame: x, y in mm with 0 at the centre of the front face, z in mm *downwards* from the front
face (depth, 0 to 166.5 mm).  A downward-going particle has polar angle ``theta`` in (90, 180]
degrees measured from the upward +z axis of AMS (the seed's convention, 155-180 degrees);
its inclination from the vertical is ``180 - theta``.  With azimuth ``phi`` (from +x
towards +y) the shower axis through the incident point ``(x0, y0)`` on the front face is::

    x(z) = x0 + z tan(180 deg - theta) cos(phi),   y(z) = y0 + z tan(180 deg - theta) sin(phi)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from astroreco.errors import InputError


@dataclass(frozen=True)
class EcalGeometry:
    """Cells, layers and materials of the calorimeter.

    Attributes
    ----------
    n_layers : int
        Read-out layers (2 per superlayer).
    n_cells : int
        Cells per layer.
    cell_mm : float
        Cell pitch (mm).
    depth_mm : float
        Total depth (mm); layers are ``depth_mm / n_layers`` thick.
    first_projection : str
        ``"x"`` or ``"y"``: what the first superlayer measures.
    x0_mm : float
        Effective radiation length of the lead-fibre-glue stack (mm); 166.5 mm is ~17 X0.
    moliere_mm : float
        Effective Moliere radius (mm).
    critical_mev : float
        Effective critical energy (MeV).
    z_eff : float
        Effective atomic number, for the shower parameterisation.
    """

    n_layers: int = 18
    n_cells: int = 72
    cell_mm: float = 9.0
    depth_mm: float = 166.5
    first_projection: str = "x"
    x0_mm: float = 9.6
    moliere_mm: float = 20.0
    critical_mev: float = 8.3
    z_eff: float = 62.0

    def __post_init__(self):
        if self.n_layers < 2 or self.n_layers % 2:
            raise InputError(f"n_layers: expected an even number >= 2 (2 per superlayer), "
                             f"got {self.n_layers}")
        if self.n_cells < 5:
            raise InputError(f"n_cells: expected >= 5, got {self.n_cells}")
        for name in ("cell_mm", "depth_mm", "x0_mm", "moliere_mm", "critical_mev", "z_eff"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name}: expected > 0, got {getattr(self, name)}")
        if self.first_projection not in ("x", "y"):
            raise InputError(f"first_projection: expected 'x' or 'y', got "
                             f"{self.first_projection!r}")

    @property
    def width_mm(self) -> float:
        """Side of the front face (mm)."""
        return self.n_cells * self.cell_mm

    @property
    def half_width_mm(self) -> float:
        return 0.5 * self.width_mm

    @property
    def layer_mm(self) -> float:
        """Thickness of one read-out layer (mm)."""
        return self.depth_mm / self.n_layers

    @property
    def depth_x0(self) -> float:
        """Total depth in radiation lengths."""
        return self.depth_mm / self.x0_mm

    def layer_edges_mm(self) -> np.ndarray:
        """``(n_layers + 1,)`` depths of the layer boundaries (mm)."""
        return np.linspace(0.0, self.depth_mm, self.n_layers + 1)

    def layer_z_mm(self) -> np.ndarray:
        """``(n_layers,)`` depths of the layer centres (mm)."""
        e = self.layer_edges_mm()
        return 0.5 * (e[:-1] + e[1:])

    def measures_x(self) -> np.ndarray:
        """``(n_layers,)`` bool: True where the layer's cells measure x (else y)."""
        superlayer = np.arange(self.n_layers) // 2
        first_is_x = self.first_projection == "x"
        return (superlayer % 2 == 0) == first_is_x

    def cell_edges_mm(self) -> np.ndarray:
        """``(n_cells + 1,)`` cell boundaries along the measured coordinate (mm)."""
        return np.linspace(-self.half_width_mm, self.half_width_mm, self.n_cells + 1)

    def cell_centres_mm(self) -> np.ndarray:
        """``(n_cells,)`` cell centres along the measured coordinate (mm)."""
        e = self.cell_edges_mm()
        return 0.5 * (e[:-1] + e[1:])

    def axis_at(self, z_mm, x0_mm, y0_mm, theta_deg, phi_deg):
        """Shower-axis position ``(x, y)`` (mm) at depth ``z_mm`` (broadcasting)."""
        slope = np.tan(np.radians(180.0 - np.asarray(theta_deg, np.float64)))
        phi = np.radians(np.asarray(phi_deg, np.float64))
        z = np.asarray(z_mm, np.float64)
        return (np.asarray(x0_mm) + z * slope * np.cos(phi),
                np.asarray(y0_mm) + z * slope * np.sin(phi))

    def fiducial(self, x0_mm, y0_mm, theta_deg, phi_deg, margin_cells: float = 2.0):
        """The seed's fiducial cut: the axis enters and leaves the calorimeter at least
        ``margin_cells`` cells from every side.  Returns a bool array."""
        limit = self.half_width_mm - margin_cells * self.cell_mm
        ok = np.ones(np.broadcast(np.asarray(x0_mm), np.asarray(theta_deg)).shape, bool)
        for z in (0.0, self.depth_mm):
            x, y = self.axis_at(z, x0_mm, y0_mm, theta_deg, phi_deg)
            ok &= (np.abs(x) <= limit) & (np.abs(y) <= limit)
        return ok

    def to_dict(self) -> dict:
        return asdict(self)
