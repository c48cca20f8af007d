# gunicorn settings, read from the working dir (/app) at start.
bind = "0.0.0.0:8000"
workers = 2
accesslog = "-"
