"""Acclaim ASF/AMC motion-capture files and their forward kinematics.

The ASF file describes a skeleton (bones with a rest direction, a length, a local axis frame
and rotational degrees of freedom, plus the hierarchy); an AMC file gives, per frame, the
values of those degrees of freedom. :func:`forward_kinematics` turns both into one 3-D point
per bone end, which is the node layout of the motion-capture experiments of the EGHN paper
(Section 4.2): node 0 is the root, node ``k >= 1`` is the end of the ``k``-th bone met in a
depth-first walk of the ASF hierarchy (children in the order the hierarchy lists them), and the
skeleton edges are the ``child -> parent`` pairs.

Conventions (Acclaim ASF/AMC, as used by the CMU database):

* Coordinates stay in ASF length units (the ``:units length`` value is recorded in
  :attr:`Skeleton.length_unit` but not applied); for CMU data 1 unit = 1/0.45 inch.
* Rotation sequences are extrinsic: a bone ``axis a b c XYZ`` is the rotation
  :math:`C = R_z(c) R_y(b) R_x(a)` (the first letter is applied first); the same rule composes
  the AMC rotations of a bone in the order of its ``dof`` list, and those of the root in the
  order of the rotation channels of its ``order`` line.
* A bone's motion rotation :math:`M` acts in its local axis frame, so its global rotation is
  :math:`G = G_{parent} C M C^{-1}` and its end is
  :math:`x_{end} = x_{start} + \\ell\\, G\\, d` with rest direction :math:`d` and length
  :math:`\\ell`. The root is treated the same way with :math:`C` built from its
  ``orientation`` (ordered by its ``axis`` line); its position is the ASF ``position`` plus
  the AMC translation channels.
* Angles in the ASF follow ``:units angle deg|rad``; AMC angles follow the AMC ``:DEGREES`` /
  ``:RADIANS`` flag (the skeleton's unit when the AMC has neither).

Malformed files raise :class:`AsfAmcError` (a :class:`ValueError`) whose message starts with
``path:line:``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "AsfAmcError",
    "Bone",
    "Motion",
    "Skeleton",
    "forward_kinematics",
    "load_trial",
    "read_amc",
    "read_asf",
]

_ROT_DOFS = ("rx", "ry", "rz")
_ROOT_CHANNELS = ("tx", "ty", "tz", "rx", "ry", "rz")


class AsfAmcError(ValueError):
    """A malformed ASF or AMC file; the message names the file and the line.

    Example:
        >>> from eghn.data.asf_amc import AsfAmcError
        >>> err = AsfAmcError("35.asf", 12, "bone 'arm' has no length")
        >>> str(err), err.line, isinstance(err, ValueError)
        ("35.asf:12: bone 'arm' has no length", 12, True)
    """

    def __init__(self, path: str | os.PathLike, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Bone:
    """One ASF bone.

    Attributes:
        name: bone name.
        direction: unit rest direction in global coordinates, shape ``(3,)``.
        length: bone length in ASF length units.
        axis: Euler angles (radians) of the bone's local axis frame, shape ``(3,)``; ``axis[k]``
            is the angle about the axis named ``axis_order[k]``.
        axis_order: the order of the ``axis`` rotations, e.g. ``"XYZ"``.
        dof: rotational degrees of freedom in AMC channel order, e.g. ``("rx", "ry", "rz")``.

    Example:
        >>> import numpy as np
        >>> from eghn.data.asf_amc import Bone
        >>> arm = Bone("arm", direction=np.array([1.0, 0.0, 0.0]), length=2.0, axis=np.zeros(3), axis_order="XYZ",
        ...            dof=("rz",))
        >>> arm.name, arm.length, arm.dof
        ('arm', 2.0, ('rz',))
    """

    name: str
    direction: np.ndarray
    length: float
    axis: np.ndarray
    axis_order: str
    dof: tuple[str, ...]


@dataclass
class Skeleton:
    """An ASF skeleton.

    Attributes:
        bones: the bones by name (the root is not a bone).
        children: ``children[name]`` lists the children of ``"root"`` or of a bone, in file order.
        root_order: the AMC channels of the root, e.g. ``("tx", "ty", "tz", "rx", "ry", "rz")``.
        root_axis: order of the root ``orientation`` rotations, e.g. ``"XYZ"``.
        root_position: ASF root position, shape ``(3,)``.
        root_orientation: ASF root orientation (radians), shape ``(3,)``.
        length_unit: the ``:units length`` value (informative; coordinates are not rescaled).
        angle_unit: ``"deg"`` or ``"rad"`` (the ``:units angle`` value).
        source: the file it was read from.

    Example:
        >>> import numpy as np
        >>> from eghn.data.asf_amc import Bone, Skeleton
        >>> def bone(name):
        ...     return Bone(name, np.array([1.0, 0.0, 0.0]), 1.0, np.zeros(3), "XYZ", ())
        >>> sk = Skeleton(bones={b: bone(b) for b in ("hip", "knee", "spine")},
        ...               children={"root": ["hip", "spine"], "hip": ["knee"]})
        >>> sk.node_names, sk.parents.tolist(), sk.edges.tolist()
        (['root', 'hip', 'knee', 'spine'], [-1, 0, 1, 0], [[1, 0], [2, 1], [3, 0]])
    """

    bones: dict[str, Bone]
    children: dict[str, list[str]]
    root_order: tuple[str, ...] = _ROOT_CHANNELS
    root_axis: str = "XYZ"
    root_position: np.ndarray = field(default_factory=lambda: np.zeros(3))
    root_orientation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    length_unit: float = 1.0
    angle_unit: str = "deg"
    source: str = "<memory>"

    @property
    def node_names(self) -> list[str]:
        """``["root", ...bones]`` in depth-first order of the hierarchy (the node order)."""
        order: list[str] = []
        stack = ["root"]
        while stack:
            name = stack.pop()
            order.append(name)
            stack.extend(reversed(self.children.get(name, [])))
        return order

    @property
    def parents(self) -> np.ndarray:
        """Parent node index of every node (``-1`` for the root), shape ``(N,)``."""
        names = self.node_names
        index = {n: i for i, n in enumerate(names)}
        parent = np.full(len(names), -1, dtype=np.int64)
        for p, kids in self.children.items():
            for c in kids:
                parent[index[c]] = index[p]
        return parent

    @property
    def edges(self) -> np.ndarray:
        """``child -> parent`` node pairs, shape ``(N - 1, 2)``, int64, ordered by child."""
        parent = self.parents
        child = np.arange(1, parent.size, dtype=np.int64)
        return np.stack([child, parent[1:]], axis=1)


@dataclass
class Motion:
    """The channels of an AMC file.

    Attributes:
        channels: ``channels[name]`` holds the values of ``"root"`` or of a bone in every
            frame, shape ``(T, k)``, in the file's angle unit.
        frames: the frame numbers of the file, shape ``(T,)``.
        degrees: whether angles are in degrees.
        fully_specified: whether the file declared ``:FULLY-SPECIFIED``.
        source: the file it was read from.

    Example:
        >>> import numpy as np
        >>> from eghn.data.asf_amc import Motion
        >>> motion = Motion(channels={"root": np.zeros((3, 6)), "arm": np.array([[0.0], [45.0], [90.0]])},
        ...                 frames=np.array([1, 2, 3]))
        >>> motion.num_frames, motion.degrees
        (3, True)
    """

    channels: dict[str, np.ndarray]
    frames: np.ndarray
    degrees: bool = True
    fully_specified: bool = True
    source: str = "<memory>"

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


# ---------------------------------------------------------------------------- ASF reader
def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise FileNotFoundError(f"ASF/AMC file not found: {path}") from None
    except OSError as exc:
        raise OSError(f"cannot read {path}: {exc}") from exc
    return text.splitlines()


def _floats(path: Path, line: int, tokens: list[str], n: int, what: str) -> np.ndarray:
    if len(tokens) != n:
        raise AsfAmcError(path, line, f"{what} needs {n} numbers, got {len(tokens)}: {' '.join(tokens)!r}")
    try:
        out = np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError:
        raise AsfAmcError(path, line, f"{what} must be numbers, got {' '.join(tokens)!r}") from None
    if not np.isfinite(out).all():
        raise AsfAmcError(path, line, f"{what} contains NaN or inf: {' '.join(tokens)!r}")
    return out


def _axis_order(path: Path, line: int, token: str) -> str:
    order = token.upper()
    if sorted(order) != ["X", "Y", "Z"]:
        raise AsfAmcError(path, line, f"rotation order must be a permutation of XYZ, got {token!r}")
    return order


def read_asf(path: str | os.PathLike) -> Skeleton:
    """Read an Acclaim ASF skeleton file.

    Handles the ``:units`` (``length``, ``angle deg|rad``), ``:root`` (``order``, ``axis``,
    ``position``, ``orientation``), ``:bonedata`` (``name``, ``direction``, ``length``,
    ``axis a b c ORDER``, ``dof``, ``limits``) and ``:hierarchy`` sections; other sections are
    skipped. Only rotational bone dofs (``rx ry rz``) are supported.

    Raises:
        FileNotFoundError: the file does not exist.
        AsfAmcError: malformed content (message ``path:line: ...``).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from eghn.data import read_asf
        >>> path = Path(tempfile.mkdtemp()) / "arm.asf"
        >>> _ = path.write_text('''
        ... :units
        ...   angle deg
        ... :root
        ...   order TX TY TZ RX RY RZ
        ...   axis XYZ
        ...   position 0 0 0
        ...   orientation 0 0 0
        ... :bonedata
        ...   begin
        ...     name arm
        ...     direction 1 0 0
        ...     length 2
        ...     axis 0 0 0 XYZ
        ...     dof rz
        ...   end
        ... :hierarchy
        ...   begin
        ...     root arm
        ...   end
        ... ''')
        >>> skeleton = read_asf(path)
        >>> skeleton.node_names, skeleton.edges.tolist(), skeleton.bones["arm"].dof
        (['root', 'arm'], [[1, 0]], ('rz',))
    """
    path = Path(path)
    lines = _read_lines(path)
    section = None
    angle_scale = math.pi / 180.0
    length_unit = 1.0
    angle_unit = "deg"
    root: dict[str, object] = {}
    raw_bones: list[tuple[int, dict[str, object]]] = []
    current: dict[str, object] | None = None
    current_line = 0
    hierarchy: list[tuple[int, list[str]]] = []
    in_hierarchy_block = False
    seen_sections: set[str] = set()

    for lineno, raw in enumerate(lines, start=1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        tokens = text.split()
        key = tokens[0]
        if key.startswith(":"):
            section = key[1:].lower()
            seen_sections.add(section)
            if section in ("version", "name") or section not in ("units", "root", "bonedata", "hierarchy"):
                # ":version 1.10", ":name VICON" and unknown sections carry nothing we need.
                section = "skip:" + section
            continue
        if section is None:
            raise AsfAmcError(path, lineno, f"content before the first ':section' keyword: {text!r}")
        if section.startswith("skip:"):
            continue
        if section == "units":
            if key == "length":
                length_unit = float(_floats(path, lineno, tokens[1:], 1, "units length")[0])
            elif key == "angle":
                if len(tokens) != 2 or tokens[1].lower() not in ("deg", "rad"):
                    raise AsfAmcError(path, lineno, f"units angle must be 'deg' or 'rad', got {text!r}")
                angle_unit = tokens[1].lower()
                angle_scale = math.pi / 180.0 if angle_unit == "deg" else 1.0
            continue
        if section == "root":
            if key == "order":
                order = tuple(t.lower() for t in tokens[1:])
                bad = [t for t in order if t not in _ROOT_CHANNELS]
                if bad or len(set(order)) != len(order):
                    raise AsfAmcError(path, lineno, f"root order must list distinct channels among "
                                      f"TX TY TZ RX RY RZ, got {' '.join(tokens[1:])!r}")
                root["order"] = order
            elif key == "axis":
                if len(tokens) != 2:
                    raise AsfAmcError(path, lineno, f"root axis needs one rotation order, got {text!r}")
                root["axis"] = _axis_order(path, lineno, tokens[1])
            elif key == "position":
                root["position"] = _floats(path, lineno, tokens[1:], 3, "root position")
            elif key == "orientation":
                root["orientation"] = _floats(path, lineno, tokens[1:], 3, "root orientation") * angle_scale
            else:
                raise AsfAmcError(path, lineno, f"unknown keyword {key!r} in :root")
            continue
        if section == "bonedata":
            if key == "begin":
                if current is not None:
                    raise AsfAmcError(path, lineno, "'begin' inside a bone (missing 'end')")
                current, current_line = {"limits_left": 0}, lineno
                continue
            if key == "end":
                if current is None:
                    raise AsfAmcError(path, lineno, "'end' without 'begin'")
                raw_bones.append((current_line, current))
                current = None
                continue
            if current is None:
                raise AsfAmcError(path, lineno, f"bone data outside a begin/end block: {text!r}")
            if key.startswith("("):
                if not current["limits_left"]:
                    raise AsfAmcError(path, lineno, f"unexpected limits line {text!r}")
                current["limits_left"] = int(current["limits_left"]) - 1
                continue
            if key == "id":
                continue
            if key == "name":
                if len(tokens) != 2:
                    raise AsfAmcError(path, lineno, f"bone name must be one word, got {text!r}")
                current["name"] = tokens[1]
            elif key == "direction":
                current["direction"] = (lineno, _floats(path, lineno, tokens[1:], 3, "bone direction"))
            elif key == "length":
                current["length"] = float(_floats(path, lineno, tokens[1:], 1, "bone length")[0])
                if current["length"] < 0:
                    raise AsfAmcError(path, lineno, f"bone length must be >= 0, got {tokens[1]}")
            elif key == "axis":
                if len(tokens) != 5:
                    raise AsfAmcError(path, lineno, f"bone axis needs 3 angles and an order, got {text!r}")
                current["axis"] = _floats(path, lineno, tokens[1:4], 3, "bone axis") * angle_scale
                current["axis_order"] = _axis_order(path, lineno, tokens[4])
            elif key == "dof":
                dof = tuple(t.lower() for t in tokens[1:])
                bad = [t for t in dof if t not in _ROT_DOFS]
                if bad:
                    raise AsfAmcError(path, lineno, f"unsupported bone dof {bad} (only rx ry rz)")
                if len(set(dof)) != len(dof):
                    raise AsfAmcError(path, lineno, f"repeated bone dof in {text!r}")
                current["dof"] = dof
            elif key == "limits":
                current["limits_left"] = len(current.get("dof", ())) - 1
            elif key in ("bodymass", "cofmass"):
                continue
            else:
                raise AsfAmcError(path, lineno, f"unknown bone keyword {key!r}")
            continue
        if section == "hierarchy":
            if key == "begin":
                in_hierarchy_block = True
            elif key == "end":
                in_hierarchy_block = False
            elif not in_hierarchy_block:
                raise AsfAmcError(path, lineno, f"hierarchy line outside begin/end: {text!r}")
            else:
                hierarchy.append((lineno, tokens))
            continue

    if current is not None:
        raise AsfAmcError(path, current_line, "bone block is not closed by 'end'")
    for needed in ("root", "bonedata", "hierarchy"):
        if needed not in seen_sections:
            raise AsfAmcError(path, None, f"missing the ':{needed}' section")

    bones: dict[str, Bone] = {}
    for line, b in raw_bones:
        for k in ("name", "direction", "length"):
            if k not in b:
                raise AsfAmcError(path, line, f"bone starting here has no {k!r}")
        name = str(b["name"])
        if name in bones or name == "root":
            raise AsfAmcError(path, line, f"bone name {name!r} is used twice")
        dline, direction = b["direction"]
        norm = float(np.linalg.norm(direction))
        if norm == 0.0:
            if b["length"] != 0.0:
                raise AsfAmcError(path, dline, f"bone {name!r} has a zero direction but a nonzero length")
        else:
            direction = direction / norm
        bones[name] = Bone(name=name, direction=direction, length=float(b["length"]),
                           axis=np.asarray(b.get("axis", np.zeros(3))),
                           axis_order=str(b.get("axis_order", "XYZ")), dof=tuple(b.get("dof", ())))

    children: dict[str, list[str]] = {}
    parent_of: dict[str, str] = {}
    for line, tokens in hierarchy:
        p, kids = tokens[0], tokens[1:]
        if p != "root" and p not in bones:
            raise AsfAmcError(path, line, f"hierarchy names unknown bone {p!r}")
        for c in kids:
            if c not in bones:
                raise AsfAmcError(path, line, f"hierarchy names unknown bone {c!r}")
            if c in parent_of:
                raise AsfAmcError(path, line, f"bone {c!r} has two parents ({parent_of[c]!r} and {p!r})")
            parent_of[c] = p
        children.setdefault(p, []).extend(kids)
    # every bone must hang off the root (this also rules out cycles)
    reached = {"root"}
    stack = ["root"]
    while stack:
        for c in children.get(stack.pop(), []):
            if c not in reached:
                reached.add(c)
                stack.append(c)
    missing = [n for n in bones if n not in reached]
    if missing:
        line = hierarchy[0][0] if hierarchy else None
        raise AsfAmcError(path, line, f"bones not connected to the root by the hierarchy: {missing}")
    return Skeleton(
        bones=bones, children=children,
        root_order=tuple(root.get("order", _ROOT_CHANNELS)), root_axis=str(root.get("axis", "XYZ")),
        root_position=np.asarray(root.get("position", np.zeros(3))),
        root_orientation=np.asarray(root.get("orientation", np.zeros(3))),
        length_unit=length_unit, angle_unit=angle_unit, source=str(path),
    )


# ---------------------------------------------------------------------------- AMC reader
def read_amc(path: str | os.PathLike, skeleton: Skeleton | None = None) -> Motion:
    """Read an Acclaim AMC motion file.

    Every frame starts with its frame number on a line of its own, followed by one line
    ``name v1 v2 ...`` per root/bone. Frame numbers must be consecutive. With a ``skeleton``,
    every frame must give the root and every bone that has dofs, with exactly as many values
    as the root ``order`` / the bone ``dof`` list; without one, every frame must give the same
    names with the same value counts as the first frame.

    Raises:
        FileNotFoundError: the file does not exist.
        AsfAmcError: malformed content (message ``path:line: ...``).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from eghn.data import read_amc
        >>> path = Path(tempfile.mkdtemp()) / "arm.amc"
        >>> _ = path.write_text(":DEGREES\\n1\\nroot 0 0 0 0 0 0\\narm 0\\n2\\nroot 0 0 0 0 0 0\\narm 90\\n")
        >>> motion = read_amc(path)  # without a skeleton: every frame must name the same channels
        >>> motion.num_frames, motion.channels["arm"].ravel().tolist()
        (2, [0.0, 90.0])
    """
    path = Path(path)
    lines = _read_lines(path)
    degrees: bool | None = None
    fully = False
    expected: dict[str, int] | None = None
    if skeleton is not None:
        expected = {"root": len(skeleton.root_order)}
        expected.update({n: len(b.dof) for n, b in skeleton.bones.items() if b.dof})
    values: dict[str, list[list[float]]] = {}
    frames: list[int] = []
    frame_line = 0
    seen: dict[str, int] = {}

    def close_frame() -> None:
        nonlocal expected
        if not frames:
            return
        if expected is None:  # no skeleton: the first frame defines the layout
            expected = dict(seen)
        missing = [n for n in expected if n not in seen]
        if missing:
            raise AsfAmcError(path, frame_line, f"frame {frames[-1]} has no values for {missing}")

    for lineno, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith(":"):
            if frames:
                raise AsfAmcError(path, lineno, f"header keyword {text!r} after the first frame")
            flag = text.upper()
            if flag == ":FULLY-SPECIFIED":
                fully = True
            elif flag == ":DEGREES":
                degrees = True
            elif flag == ":RADIANS":
                degrees = False
            continue
        tokens = text.split()
        if len(tokens) == 1:
            try:
                number = int(tokens[0])
            except ValueError:
                msg = f"expected a frame number or 'name values...', got {text!r}"
                raise AsfAmcError(path, lineno, msg) from None
            close_frame()
            if frames and number != frames[-1] + 1:
                raise AsfAmcError(path, lineno, f"frame {number} follows frame {frames[-1]} "
                                  "(frame numbers must be consecutive)")
            frames.append(number)
            frame_line = lineno
            seen = {}
            continue
        if not frames:
            raise AsfAmcError(path, lineno, f"values before the first frame number: {text!r}")
        name = tokens[0]
        if name in seen:
            raise AsfAmcError(path, lineno, f"{name!r} appears twice in frame {frames[-1]}")
        if expected is not None:
            if name not in expected:
                raise AsfAmcError(path, lineno, f"unknown bone {name!r} (or a bone without dofs)")
            if len(tokens) - 1 != expected[name]:
                msg = f"{name!r} needs {expected[name]} values, got {len(tokens) - 1}"
                raise AsfAmcError(path, lineno, msg)
        elif len(frames) > 1:
            raise AsfAmcError(path, lineno, f"{name!r} does not appear in the first frame")
        try:
            vals = [float(t) for t in tokens[1:]]
        except ValueError:
            raise AsfAmcError(path, lineno, f"values of {name!r} must be numbers: {text!r}") from None
        if not all(math.isfinite(v) for v in vals):
            raise AsfAmcError(path, lineno, f"values of {name!r} contain NaN or inf")
        seen[name] = len(vals)
        values.setdefault(name, []).append(vals)
    close_frame()
    if not frames:
        raise AsfAmcError(path, None, "no frames")
    if degrees is None:
        degrees = skeleton.angle_unit == "deg" if skeleton is not None else True
    channels = {n: np.asarray(v, dtype=np.float64).reshape(len(frames), -1) for n, v in values.items()}
    return Motion(channels=channels, frames=np.asarray(frames, dtype=np.int64), degrees=degrees,
                  fully_specified=fully, source=str(path))


# ---------------------------------------------------------------------------- kinematics
def _axis_rotation(axis: str, angle: np.ndarray) -> np.ndarray:
    """Rotation matrices about a coordinate axis, shape ``angle.shape + (3, 3)``."""
    c, s = np.cos(angle), np.sin(angle)
    one, zero = np.ones_like(angle), np.zeros_like(angle)
    if axis == "x":
        rows = [[one, zero, zero], [zero, c, -s], [zero, s, c]]
    elif axis == "y":
        rows = [[c, zero, s], [zero, one, zero], [-s, zero, c]]
    else:
        rows = [[c, -s, zero], [s, c, zero], [zero, zero, one]]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def _euler(angles: np.ndarray, axes: str) -> np.ndarray:
    """Extrinsic rotation: ``axes[0]`` applied first. ``angles`` ``(..., k)`` -> ``(..., 3, 3)``."""
    out = np.broadcast_to(np.eye(3), (*angles.shape[:-1], 3, 3)).copy()
    for k, ax in enumerate(axes):
        out = _axis_rotation(ax, angles[..., k]) @ out
    return out


def forward_kinematics(skeleton: Skeleton, motion: Motion) -> np.ndarray:
    """Positions of the root and of every bone end in every frame.

    Returns:
        array of shape ``(T, N, 3)`` (float64), ``N = 1 + number of bones``, node order
        :attr:`Skeleton.node_names`, in ASF length units.

    Example:
        >>> import numpy as np
        >>> from eghn.data.asf_amc import Bone, Motion, Skeleton, forward_kinematics
        >>> arm = Bone("arm", np.array([1.0, 0.0, 0.0]), 2.0, np.zeros(3), "XYZ", ("rz",))
        >>> skeleton = Skeleton(bones={"arm": arm}, children={"root": ["arm"]})
        >>> motion = Motion(channels={"root": np.zeros((2, 6)), "arm": np.array([[0.0], [90.0]])},
        ...                 frames=np.array([1, 2]))
        >>> forward_kinematics(skeleton, motion).round(6)[:, 1].tolist()  # the arm's end turns from +x to +y
        [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]
    """
    T = motion.num_frames
    scale = math.pi / 180.0 if motion.degrees else 1.0
    names = skeleton.node_names
    pos = np.zeros((T, len(names), 3))
    rot = np.zeros((T, len(names), 3, 3))

    root = motion.channels.get("root")
    if root is None or root.shape[1] != len(skeleton.root_order):
        raise AsfAmcError(motion.source, None,
                          f"root needs {len(skeleton.root_order)} channels per frame ({skeleton.root_order})")
    translation = np.zeros((T, 3))
    rot_axes, rot_cols = "", []
    for col, ch in enumerate(skeleton.root_order):
        if ch[0] == "t":
            translation[:, "xyz".index(ch[1])] = root[:, col]
        else:
            rot_axes += ch[1]
            rot_cols.append(col)
    c_root = _euler(skeleton.root_orientation, skeleton.root_axis.lower())
    m_root = _euler(root[:, rot_cols] * scale, rot_axes)
    rot[:, 0] = c_root @ m_root @ c_root.T
    pos[:, 0] = skeleton.root_position + translation

    parents = skeleton.parents
    for i, name in enumerate(names[1:], start=1):
        bone = skeleton.bones[name]
        c = _euler(bone.axis, bone.axis_order.lower())
        if bone.dof:
            vals = motion.channels.get(name)
            if vals is None or vals.shape[1] != len(bone.dof):
                msg = f"bone {name!r} needs {len(bone.dof)} channels per frame"
                raise AsfAmcError(motion.source, None, msg)
            local = c @ _euler(vals * scale, "".join(d[1] for d in bone.dof)) @ c.T
            rot[:, i] = rot[:, parents[i]] @ local
        else:
            rot[:, i] = rot[:, parents[i]]
        pos[:, i] = pos[:, parents[i]] + bone.length * (rot[:, i] @ bone.direction)
    return pos


def load_trial(asf: str | os.PathLike | Skeleton, amc: str | os.PathLike) -> np.ndarray:
    """Read an AMC file (and its ASF skeleton, or a parsed one) and run forward kinematics.

    Returns:
        positions of shape ``(T, N, 3)`` (see :func:`forward_kinematics`).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> import numpy as np
        >>> from eghn.data.asf_amc import Bone, Skeleton, load_trial
        >>> arm = Bone("arm", np.array([1.0, 0.0, 0.0]), 2.0, np.zeros(3), "XYZ", ("rz",))
        >>> skeleton = Skeleton(bones={"arm": arm}, children={"root": ["arm"]})
        >>> amc = Path(tempfile.mkdtemp()) / "arm.amc"
        >>> _ = amc.write_text(":DEGREES\\n1\\nroot 1 0 0 0 0 0\\narm 0\\n2\\nroot 1 0 0 0 0 0\\narm 180\\n")
        >>> load_trial(skeleton, amc).round(6).tolist()
        [[[1.0, 0.0, 0.0], [3.0, 0.0, 0.0]], [[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]]
    """
    skeleton = asf if isinstance(asf, Skeleton) else read_asf(asf)
    return forward_kinematics(skeleton, read_amc(amc, skeleton))
