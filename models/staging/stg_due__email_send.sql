{{ due_event_view('_email.send') }}
