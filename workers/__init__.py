"""RQ entry points. Each is a few lines; the logic they call lives in telehealth/."""
