{{ due_event_view('_email.click') }}
