"""Scripts that run *inside* the sandbox. Each is standalone: it must not import `grader`."""
