"""Import path kept for plugins written against Playbook 1.x (`playbook.domain.plugins`)."""
