"""The Celery app decides LOG_FORMAT before the settings load, without leaking a developer's .env.

Regression: it used to load the whole .env into os.environ, so after `make run` wrote a
development .env (DEBUG, the sandbox bank), `make test` ran with those settings.
"""

from fulfillment_site.celery import dotenv_value, json_logs_wanted

DEV_ENV = "DJANGO_DEBUG=true\nTBANK_SANDBOX=true\n# a comment\nexport LOG_FORMAT='json'  # wanted\n"


def test_only_log_format_is_read_and_the_environment_is_untouched(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(DEV_ENV)
    environ = {"PATH": "/bin"}
    assert json_logs_wanted(environ=environ, env_file=env_file)
    assert environ == {"PATH": "/bin"}


def test_the_environment_wins_over_dotenv(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(DEV_ENV)
    assert not json_logs_wanted(environ={"LOG_FORMAT": "plain"}, env_file=env_file)


def test_dotenv_is_ignored_when_the_settings_ignore_it(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(DEV_ENV)
    assert not json_logs_wanted(environ={"DJANGO_IGNORE_DOTENV": "1"}, env_file=env_file)


def test_no_dotenv_means_plain_logs(tmp_path):
    assert not json_logs_wanted(environ={}, env_file=tmp_path / ".env")


def test_last_assignment_wins(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("LOG_FORMAT=json\nLOG_FORMAT=plain\n")
    assert dotenv_value(env_file, "LOG_FORMAT") == "plain"
    assert dotenv_value(env_file, "MISSING") is None
