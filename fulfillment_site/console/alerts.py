"""Staff alert emails: every problem of the dashboard (console.problems) that is present, each at
most once per STAFF_ALERT_REPEAT_MINUTES, whichever process sends.

Run by the periodic Celery task console.send_staff_alerts, never inside a request: a slow mail
server must not slow the webhook. The StaffAlert row of a problem is claimed with a conditional
UPDATE before sending, so two workers running the task at once send one email, not two.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db.models import Q
from django.utils import timezone

from fulfillment_site.console.models import StaffAlert
from fulfillment_site.console.problems import ProblemCount, problems_count

logger = logging.getLogger(__name__)


def _claim(problem: ProblemCount, now) -> tuple[bool, object]:
    """Take the right to email about `problem` now; returns (claimed, the previous last_sent_at)."""
    alert, _ = StaffAlert.objects.get_or_create(problem=problem.key)
    repeat_before = now - timedelta(minutes=settings.STAFF_ALERT_REPEAT_MINUTES)
    claimed = (
        StaffAlert.objects.filter(pk=alert.pk)
        .filter(Q(last_sent_at__isnull=True) | Q(last_sent_at__lte=repeat_before))
        .update(last_sent_at=now, last_count=problem.count)
    )
    return bool(claimed), alert.last_sent_at


def _absolute(url: str) -> str:
    return f"{settings.STAFF_CONSOLE_URL.rstrip('/')}{url}" if settings.STAFF_CONSOLE_URL else url


def alert_text(problems: list[ProblemCount]) -> tuple[str, str]:
    """(subject, body) of one alert email about `problems`."""
    summary = ", ".join(f"{problem.title.lower()} ({problem.count})" for problem in problems)
    subject = f"[Fulfillment] Needs staff: {summary}"
    lines = []
    for problem in problems:
        lines.append(f"{problem.count} × {problem.title}")
        lines.extend(f"    {detail}" for detail in problem.problem.details())
        if problem.hint:
            lines.append(f"    What to do: {problem.hint}")
        lines.append(f"    {_absolute(problem.url)}")
        lines.append("")
    repeat = settings.STAFF_ALERT_REPEAT_MINUTES
    lines.append(f"Each problem is emailed at most once every {repeat} minutes while it lasts.")
    return subject[:200], "\n".join(lines)


def staff_alerts_send() -> list[str]:
    """Email STAFF_ALERT_EMAILS about every present problem not emailed within the repeat window.

    Returns the keys of the problems emailed. A failed send gives the claims back, so the next
    run tries again instead of staying silent for the whole window.
    """
    recipients = [address for address in settings.STAFF_ALERT_EMAILS if address]
    if not recipients:
        return []
    now = timezone.now()
    claimed: list[tuple[ProblemCount, object]] = []
    for problem in problems_count():
        if problem.count:
            won, previous = _claim(problem, now)
            if won:
                claimed.append((problem, previous))
    if not claimed:
        return []
    problems = [problem for problem, _ in claimed]
    subject, body = alert_text(problems)
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
    except Exception:
        for problem, previous in claimed:
            StaffAlert.objects.filter(problem=problem.key, last_sent_at=now).update(last_sent_at=previous)
        logger.exception("Staff alert email about %s could not be sent", ", ".join(p.key for p in problems))
        raise
    StaffAlert.objects.filter(problem__in=[problem.key for problem in problems]).update(last_text=body[:5000])
    logger.warning("Staff alerted about %s", ", ".join(f"{p.key}={p.count}" for p in problems))
    return [problem.key for problem in problems]
