"""Privacy routes, mounted beside billing's (`/api/v1/billing/`)."""

from django.urls import path

from . import views

app_name = "privacy"
urlpatterns = [
    path("data-subjects/<str:phone>", views.DataSubjectView.as_view(), name="data-subject"),
]
