"""The stuck-at fault model's numbers (ReMeCo Table 2), defined once.

ReMeCo draws stuck-at faults for 1 % of the devices of every circuit model; of the stuck
devices 83.8 % are stuck at on (LRS, the highest conductance) and 16.2 % at off (HRS).
Every default that means one of these quantities imports it from here: the chip model
(:class:`remeco.models.chip.ChipParams`, :func:`remeco.models.device.sample_stuck_at`),
the on-chip fault generator's driver (:meth:`remeco.host.driver.Accelerator.inject_faults`)
and ``remeco run --on-fraction``. Plain constants, no imports: the board-side driver uses
them without NumPy's friends.
"""

__all__ = ["STUCK_AT_RATE", "STUCK_ON_FRACTION"]

#: Fraction of devices stuck (stuck-at-on plus stuck-at-off).
STUCK_AT_RATE = 0.01
#: Of the stuck devices, the fraction stuck at on (LRS); the rest are stuck at off (HRS).
STUCK_ON_FRACTION = 0.838
