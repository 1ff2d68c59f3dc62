"""DICOM outputs for a DICOM input: a Segmentation, a TID 1500 Structured Report and a one-page
PDF report, each referencing the source series (see :mod:`lungcad.dicom_out.case`)."""
