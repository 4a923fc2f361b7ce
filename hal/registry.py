"""One registry per device family: a driver's name → how to open it and what options it takes.

Each family module owns its registry (``BURNERS`` in burner.py, ``ROBOTS``, ``REMOVABLE``,
``PRINTERS``, ``PANELS``), and each built-in driver registers itself next to its class.
A plugin adds drivers through the ``dicombox_hal_drivers`` hook, returning entries made
with ``Registry.entry``; the host registers them when it starts, before it reads the
configuration, so the configuration knows their names.

A driver declares its options as a dataclass whose fields are the configuration keys
it reads, from the section that chooses it (Klipper's way: ``[media] burner =
"xorriso"`` and the xorriso driver reads ``device`` from ``[media]``). The plugin owning
the section builds the options, validated like any section (errors name the key), and
opens the device with ``open(name, options, context)``. An options class may have a
``validate(name)`` that raises ``ValueError`` with what the driver needs, worded to
follow the key that chose it ("needs hot_folder, the robot's").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class DriverError(ValueError):
    """A driver that cannot be registered or opened as asked."""


class UnknownDriver(DriverError):
    def __init__(self, family: str, name: str, known: list[str]) -> None:
        super().__init__(f"unknown {family} driver {name!r}; known: {', '.join(known)}")
        self.family, self.name, self.known = family, name, known


@dataclass(frozen=True)
class NoOptions:
    """The options of a driver that reads no configuration key."""


@dataclass(frozen=True)
class DriverContext:
    """What a driver may need besides its options, from whoever opens it."""

    data_dir: Path = Path(".")  # the box's data folder: a simulator's files go below it
    name: str = ""  # the device's own name in the configuration (a [[printer]]'s)
    # The opener's own object, for a driver that belongs to the plugin opening it (the
    # print plugin hands its DICOM film printer the box). Drivers of hal never use it.
    host: Any = None


Factory = Callable[[Any, DriverContext], T]


@dataclass(frozen=True)
class Driver(Generic[T]):
    name: str
    factory: Factory[T]
    options_type: type

    def config_keys(self) -> list[str]:
        """The configuration keys the driver reads."""
        return [f.name for f in dataclasses.fields(self.options_type)]


@dataclass(frozen=True)
class DriverEntry(Generic[T]):
    """A driver a plugin contributes, bound to its family's registry: the host calls
    ``register()`` for each entry a plugin's ``dicombox_hal_drivers`` returns."""

    registry: Registry[T]
    driver: Driver[T]

    @property
    def family(self) -> str:
        return self.registry.family

    @property
    def name(self) -> str:
        return self.driver.name

    def register(self) -> None:
        self.registry.add(self.driver)


class Registry(Generic[T]):
    """The drivers of one device family, by name, in the order they were registered."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._drivers: dict[str, Driver[T]] = {}

    def register(self, name: str, factory: Factory[T], options_type: type = NoOptions) -> None:
        """Add a driver; ``factory(options, context)`` opens a device."""
        self.add(Driver(name, factory, options_type))

    def entry(
        self, name: str, factory: Factory[T], options_type: type = NoOptions
    ) -> DriverEntry[T]:
        """A driver for a plugin's ``dicombox_hal_drivers`` to return."""
        return DriverEntry(self, Driver(name, factory, options_type))

    def add(self, driver: Driver[T]) -> None:
        if not dataclasses.is_dataclass(driver.options_type):
            raise DriverError(
                f"{self.family} driver {driver.name!r}: its options must be a dataclass"
            )
        known = self._drivers.get(driver.name)
        if known is not None and known != driver:
            # Registering the same driver again (a second start in one process) is fine;
            # a second driver taking a name would change what a configuration means.
            raise DriverError(f"{self.family} driver {driver.name!r} is registered already")
        self._drivers[driver.name] = driver

    def names(self) -> list[str]:
        return list(self._drivers)

    def __contains__(self, name: object) -> bool:
        return name in self._drivers

    def driver(self, name: str) -> Driver[T]:
        try:
            return self._drivers[name]
        except KeyError:
            raise UnknownDriver(self.family, name, self.names()) from None

    def options_type(self, name: str) -> type:
        return self.driver(name).options_type

    def config_keys(self) -> set[str]:
        """Every configuration key some driver of the family reads."""
        return {key for driver in self._drivers.values() for key in driver.config_keys()}

    def open(self, name: str, options: Any = None, context: DriverContext | None = None) -> T:
        """The device of driver ``name`` with ``options`` (its defaults when None)."""
        driver = self.driver(name)
        if options is None:
            options = driver.options_type()
        elif not isinstance(options, driver.options_type):
            raise DriverError(
                f"{self.family} driver {name!r} takes {driver.options_type.__name__}, "
                f"not {type(options).__name__}"
            )
        return driver.factory(options, context or DriverContext())
