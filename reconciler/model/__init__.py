"""The shared model: plain frozen data every layer speaks.

The pure core (``plan/``, ``policy/``, the issuers' checks) and the impure
edges (``providers/``, ``engine/``, ``state/``) both import these types, and
this package imports nothing from those edges (only the typed specs of
``plan/specs.py``), so the diff can be read and tested without pulling in a
target, a network client or the state store.

* ``desired``  — what the configuration asks for (``DesiredState``).
* ``records``  — what the state remembers (``RecordedState`` and its records).
* ``observed`` — what a target saw when asked (``Observation``, ``Facts``,
  ``Missing``, ``Unreachable``).
* ``material`` — certificate material handed between issuers, the state and
  targets (``IssuedMaterial``, ``CertificateMaterial``).
"""
