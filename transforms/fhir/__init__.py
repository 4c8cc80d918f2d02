"""FHIR R4 (R4B models) for care systems: vital-sign Observations, Devices, alert Flags and Communications.

``resources`` maps lake and warehouse rows to FHIR resources (plain JSON documents),
``profile`` checks them (the R4B models of ``fhir.resources`` plus the vital-signs profile rules,
written out), ``export`` writes a Bulk Data export to the lake and builds a patient's
``$everything``, ``clients`` holds the care systems' read credentials. The mapping table is in
docs/fhir.md.
"""
