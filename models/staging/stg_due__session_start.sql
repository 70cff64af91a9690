{{ due_event_view('_session.start') }}
