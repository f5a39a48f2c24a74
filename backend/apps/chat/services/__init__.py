from .business_hours import BusinessHoursService, WeeklySchedule

__all__ = ["BusinessHoursService", "WeeklySchedule"]
