"""Notifications: an outbox of in-app messages per user, delivered by e-mail over SMTP too."""
